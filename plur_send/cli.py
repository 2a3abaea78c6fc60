"""plur-send: run the daemon (no subcommand), or manage it as a systemd user service.

Thin on purpose: the daemon is plurcast.daemon, the unit file and systemctl calls are
plurcast.service, sd_notify is plurcast.systemd; this module parses and prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from plur_send import early
from plurcast import clikit, cliparse, logchoices, logs, store
from plurcast import config as config_module

if TYPE_CHECKING:  # the daemon's modules load only when it runs
    from plurcast.daemon import Options

# The commands that manage the service (imported when one is run).
LAZY = dict.fromkeys(
    ("install", "uninstall", "start", "stop", "restart", "logs", "health", "status"),
    "plur_send.manage",
)
DAEMON_OPTIONS = (
    "once",
    "poll_interval",
    "max_concurrency",
    "no_retry",
    "startup_delay",
    "verbose",
    "log_format",
)


@click.group(
    "plur-send",
    cls=clikit.LazyGroup,
    lazy=LAZY,
    invoke_without_command=True,
    context_settings=clikit.CONTEXT,
    epilog="""\b
Examples:
  plur-send                 run in the foreground until SIGTERM/Ctrl-C
  plur-send --once          deliver everything due now, then exit
  plur-send -v --log-format json
  plur-send --startup-delay 30 --log-level warn
  plur-send install --now   run it as a systemd user service from now on
  plur-send status          is it running, and what is waiting?

\b
Signals: TERM/INT finish in-flight deliveries (within [scheduling]
shutdown_timeout), give back the rest and exit 0; a second one exits at once.
HUP re-reads the config.
Exit codes: 0 ok, 1 a delivery failed for good (--once), a runtime error or
no systemd user manager, 2 config error, 3 invalid input.""",
)
@cliparse.option(
    "--once", is_flag=True, help="Deliver what is due now, then exit (1 if any gave up)."
)
@cliparse.option(
    "--poll-interval",
    type=float,
    callback=clikit.in_range("poll_interval"),
    metavar="S",
    help="Longest sleep between looks at the queue (default: [scheduling] poll_interval).",
)
@cliparse.option(
    "--max-concurrency",
    type=int,
    callback=clikit.in_range("max_concurrency"),
    metavar="N",
    help="Deliveries on the wire at once for each platform, so that a server that is down "
    "delays only its own platform's posts (default: [scheduling] max_concurrency).",
)
@cliparse.option(
    "--no-retry", is_flag=True, help="Give up on the first failure instead of retrying."
)
@cliparse.option(
    "--startup-delay",
    type=float,
    callback=clikit.in_range("startup_delay"),
    metavar="S",
    help="Wait this long after starting before delivering anything, so that a restart does "
    "not send a burst of retries at once (default: [scheduling] startup_delay; --once "
    "waits only when this is given).",
)
@cliparse.option("-v", "--verbose", is_flag=True, help="Debug logging (--log-level debug).")
@cliparse.option(
    "--log-level",
    type=click.Choice(logchoices.LEVELS, case_sensitive=False),
    envvar="PLURCAST_LOG_LEVEL",
    show_envvar=True,
    default="info",
    show_default=True,
    metavar="LEVEL",
    help="Log from this level up: error, warn, info, debug, trace (trace adds the SDKs' "
    "own lines).",
)
@cliparse.option(
    "--log-format",
    type=click.Choice(logchoices.FORMATS, case_sensitive=False),
    envvar="PLURCAST_LOG_FORMAT",
    show_envvar=True,
    metavar="FORMAT",
    help="text, json (one object a line) or pretty (coloured) lines on stderr, or journal "
    "entries with POST_ID, PLATFORM, ACCOUNT and DELIVERY_STATE fields "
    "[default: journal under systemd, else text].",
)
@clikit.version_option("plur-send")
@click.pass_context
def cli(
    ctx: click.Context,
    once: bool,
    poll_interval: float | None,
    max_concurrency: int | None,
    no_retry: bool,
    startup_delay: float | None,
    verbose: bool,
    log_level: str,
    log_format: str | None,
) -> int:
    """Deliver scheduled posts when they are due: on time, exactly once, with retries.

    Without a command it runs the daemon in the foreground; the commands install and
    control it as a systemd user service.
    """
    if ctx.invoked_subcommand is not None:
        early.release()
        given = [
            f"--{name.replace('_', '-')}"
            for name in DAEMON_OPTIONS
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} runs the daemon and cannot go with '{ctx.invoked_subcommand}'"
            )
        return 0
    from plurcast.daemon import Options

    logs.setup(log_level, log_format and log_format.lower(), verbose=verbose)
    return run_daemon(Options(once, poll_interval, max_concurrency, no_retry, startup_delay))


def run_daemon(options: Options) -> int:
    from plurcast.daemon import Daemon
    from plurcast.systemd import SystemdNotifier

    daemon = Daemon(
        config_module.load,
        store.open_db,
        options,
        notifier=SystemdNotifier(),
    )

    def act_on_held_signals() -> None:
        for held in early.take():
            if held == early.SIGHUP:
                daemon.request_reload()
            else:
                daemon.request_stop(held)

    act_on_held_signals()
    idle = daemon.finish_if_idle()  # --once with nothing due: no event loop, no asyncio
    if idle is not None:
        return idle
    import asyncio
    import signal  # here, not above: an idle --once ends without it (enum-made, ~3 M instructions)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
        act_on_held_signals()
        return await daemon.run()

    return asyncio.run(main())


def main() -> None:
    cli()
