"""plur-send: the daemon that delivers what is due."""


def main() -> None:
    """The console script: hold stop signals first, then import and run the CLI."""
    from plur_send import early

    early.catch()
    from plur_send.cli import main as cli_main

    cli_main()
