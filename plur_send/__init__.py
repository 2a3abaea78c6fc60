"""plur-send: the daemon that delivers what is due."""


def main() -> None:
    """The console script: hold stop signals first, then import and run the CLI."""
    from plur_send import early

    early.catch()
    from plurcast.bulk import console

    console("plur_send.cli", run_paused=False)
