"""plur-send: run the daemon (no subcommand), or manage it as a systemd user service.

Thin on purpose: the daemon is plurcast.daemon, the unit file and systemctl calls are
plurcast.service, sd_notify is plurcast.systemd; this module parses and prints.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from plur_send import early
from plurcast import __version__, clikit, logchoices, logs, queue, service, stats
from plurcast import config as config_module
from plurcast.errors import RuntimeFailure
from plurcast.health import (
    absence_text,
    daemon_health,
    daemon_json,
    daemon_text,
    heartbeat_text,
)
from plurcast.models import to_ms
from plurcast.output import Format, emit_json, emit_lines

if TYPE_CHECKING:  # the daemon's modules load only when it runs
    from plurcast.daemon import Options

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
    cls=clikit.Group,
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
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit (1 if any gave up).")
@click.option(
    "--poll-interval",
    type=float,
    callback=clikit.in_range("poll_interval"),
    metavar="S",
    help="Longest sleep between looks at the queue (default: [scheduling] poll_interval).",
)
@click.option(
    "--max-concurrency",
    type=int,
    callback=clikit.in_range("max_concurrency"),
    metavar="N",
    help="Deliveries on the wire at once for each platform, so that a server that is down "
    "delays only its own platform's posts (default: [scheduling] max_concurrency).",
)
@click.option("--no-retry", is_flag=True, help="Give up on the first failure instead of retrying.")
@click.option(
    "--startup-delay",
    type=float,
    callback=clikit.in_range("startup_delay"),
    metavar="S",
    help="Wait this long after starting before delivering anything, so that a restart does "
    "not send a burst of retries at once (default: [scheduling] startup_delay; --once "
    "waits only when this is given).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging (--log-level debug).")
@click.option(
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
@click.option(
    "--log-format",
    type=click.Choice(logchoices.FORMATS, case_sensitive=False),
    envvar="PLURCAST_LOG_FORMAT",
    show_envvar=True,
    metavar="FORMAT",
    help="text, json (one object a line) or pretty (coloured) lines on stderr, or journal "
    "entries with POST_ID, PLATFORM, ACCOUNT and DELIVERY_STATE fields "
    "[default: journal under systemd, else text].",
)
@click.version_option(__version__, "-V", "--version", prog_name="plur-send")
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
        queue.open_db,
        options,
        notifier=SystemdNotifier(),
    )

    def act_on_held_signals() -> None:
        for held in early.take():
            if held == signal.SIGHUP:
                daemon.request_reload()
            else:
                daemon.request_stop(held)

    act_on_held_signals()
    idle = daemon.finish_if_idle()  # --once with nothing due: no event loop, no asyncio
    if idle is not None:
        return idle
    import asyncio

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, daemon.request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
        act_on_held_signals()
        return await daemon.run()

    return asyncio.run(main())


# --- the systemd user service --------------------------------------------------------------


def no_user_manager(exc: service.NoUserManager, action: str, done: str = "") -> NoReturn:
    """One `Error:` line, then what to run by hand once a user manager is there."""
    raise RuntimeFailure(
        f"{exc}{done}",
        f"run these from a login session of {service.user_name()}:",
        details=service.manual_steps(action),
    ) from exc


@cli.command()
@click.option("--now", "start", is_flag=True, help="Also start it now (else at next login).")
def install(start: bool) -> None:
    """Install plur-send as a systemd user service and enable it.

    Writes plur-send.service to $XDG_CONFIG_HOME/systemd/user/ with ExecStart set to this
    installation's plur-send (and PLURCAST_CONFIG/PLURCAST_DB_PATH when this shell sets
    them), then reloads systemd and enables the unit. Running it again rewrites the unit;
    'plur-send restart' then applies it to a running service.

    \b
    Example:
      plur-send install --now && plur-send status
    """
    path, settings = service.write_unit(config_module.load())
    click.echo(f"wrote {path} (ExecStart={settings.exec_start})")
    try:
        service.enable(start)
    except service.NoUserManager as exc:
        no_user_manager(exc, "install", "; the unit file is written")
    click.echo(
        f"enabled {service.UNIT_NAME}"
        + (": started now" if start else ": it starts at your next login ('plur-send start' now)")
    )
    if not service.linger_enabled():
        sys.stderr.write(
            f"Hint: systemd stops your services when you log out. To keep plur-send running "
            f"while logged out and start it at boot: {service.linger_command()}\n"
        )


@cli.command()
def uninstall() -> None:
    """Stop and disable the service and remove its unit file (posts and config stay)."""
    try:
        path = service.uninstall()
    except service.NoUserManager as exc:
        no_user_manager(exc, "uninstall")
    if path is None:
        sys.stderr.write(f"{service.UNIT_NAME} is not installed (no {service.unit_path()})\n")
        return
    click.echo(f"stopped and disabled {service.UNIT_NAME}, removed {path}")


def _control_command(action: str, summary: str, done: str) -> click.Command:
    def control() -> None:
        try:
            service.control(action)
        except service.NoUserManager as exc:
            no_user_manager(exc, action)
        click.echo(f"{done} {service.UNIT_NAME}")

    control.__doc__ = summary
    return cli.command(action)(control)


_control_command("start", "Start the service (systemctl --user start).", "started")
_control_command("stop", "Stop the service; in-flight deliveries finish first.", "stopped")
_control_command("restart", "Restart the service, e.g. after an upgrade.", "restarted")


@cli.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they come.")
@click.option(
    "-n", "--lines", type=click.IntRange(min=0), metavar="N", help="Show only the last N entries."
)
def logs_cmd(follow: bool, lines: int | None) -> int:
    """The service's log from the journal (journalctl --user-unit plur-send.service).

    \b
    Examples:
      plur-send logs -n 50
      plur-send logs -f
      journalctl --user-unit plur-send.service POST_ID=<id>   one post's story
    """
    return service.journal(follow, lines)


@cli.command()
@clikit.format_option
def health(fmt: Format) -> None:
    """Exit 0 when a plur-send daemon beat its heartbeat in the last 30 s, else 1.

    For monitoring: any daemon using this database counts, under systemd or not.
    """
    cfg = config_module.load()
    now = clikit.now()
    daemon = daemon_health(queue.open_db(cfg, create=False), to_ms(now))
    if fmt != "text":
        emit_json(daemon_json(daemon, cfg.timezone), fmt)
    elif daemon.running:
        emit_lines([f"ok: plur-send {heartbeat_text(daemon, now)}"])
    if not daemon.running:
        raise RuntimeFailure(absence_text(daemon, now), "start it: plur-send start (or plur-send)")


@cli.command()
@clikit.format_option
def status(fmt: Format) -> None:
    """The service as systemd sees it, the daemon's heartbeat, and the queue.

    Warns when posts are overdue and no daemon is running.
    """
    cfg = config_module.load()
    now = clikit.now()
    unit: dict[str, str] | None
    try:
        unit = service.show()
        manager_problem = None
    except service.NoUserManager as exc:
        unit, manager_problem = None, exc.reason
    result = stats.compute(queue.open_db(cfg, create=False), now, cfg.timezone)
    if fmt != "text":
        emit_json(
            {
                "systemd": unit or {"error": manager_problem},
                "daemon": daemon_json(result.daemon, cfg.timezone),
                "daemons": [daemon_json(d, cfg.timezone) for d in result.daemons],
                "queue": {
                    "total": result.total,
                    "by_time_bucket": result.by_time_bucket,
                    "failed": result.by_status.get("failed", 0),
                },
            },
            fmt,
        )
    else:
        lines = [f"service: {_unit_text(unit, manager_problem)}"]
        if unit and unit["StatusText"]:
            lines.append(f"status:  {unit['StatusText']}")
        lines += [f"daemon:  {daemon_text(d, now)}" for d in result.every_daemon]
        buckets = ", ".join(
            f"{n} {name.replace('_', ' ')}" for name, n in result.by_time_bucket.items() if n
        )
        failed = result.by_status.get("failed", 0)
        lines.append(
            f"queue:   {result.total} scheduled"
            + (f" ({buckets})" if buckets else "")
            + (f", {failed} failed" if failed else "")
        )
        emit_lines(lines)
    warning = result.overdue_warning()
    if warning:
        sys.stderr.write(warning + "\n")


def _unit_text(unit: dict[str, str] | None, manager_problem: str | None) -> str:
    if unit is None:
        return f"unknown: no systemd user manager ({manager_problem})"
    if unit["LoadState"] == "not-found":
        return "not installed (plur-send install)"
    text = f"{unit['ActiveState']} ({unit['SubState']}), {unit['UnitFileState'] or 'static'}"
    if unit["MainPID"] not in ("", "0"):
        text += f", pid {unit['MainPID']}"
    return text


def main() -> None:
    cli()
