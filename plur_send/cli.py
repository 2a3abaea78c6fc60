"""plur-send: parse options, set up logging and signals, run plurcast.daemon."""

from __future__ import annotations

import asyncio
import signal

import click

from plurcast import __version__, clikit, logs, queue
from plurcast import config as config_module
from plurcast.daemon import Daemon, Options


@click.command(
    cls=clikit.Command,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-send                 run in the foreground until SIGTERM/Ctrl-C
  plur-send --once          deliver everything due now, then exit
  plur-send -v --log-format json

\b
Signals: TERM/INT finish in-flight deliveries (within [scheduling]
shutdown_timeout), give back the rest and exit 0; a second one exits at once.
HUP re-reads the config.
Exit codes: 0 ok, 1 a delivery failed for good (--once) or runtime error,
2 config error.""",
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (1 if any gave up).")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    metavar="S",
    help="Longest sleep between looks at the queue (default: [scheduling] poll_interval).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    metavar="N",
    help="Deliveries on the wire at once (default: [scheduling] max_concurrency).",
)
@click.option("--no-retry", is_flag=True, help="Give up on the first failure instead of retrying.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or JSON objects (stderr).",
)
@click.version_option(__version__, "-V", "--version", prog_name="plur-send")
def cli(
    once: bool,
    poll_interval: float | None,
    max_concurrency: int | None,
    no_retry: bool,
    verbose: bool,
    log_format: str,
) -> int:
    """Deliver scheduled posts when they are due: on time, exactly once, with retries."""
    logs.setup(verbose, log_format)
    daemon = Daemon(
        config_module.load,
        queue.open_db,
        Options(once, poll_interval, max_concurrency, no_retry),
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
        return await daemon.run()

    return asyncio.run(main())


def main() -> None:
    cli()
