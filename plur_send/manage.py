"""plur-send's commands that manage the daemon as a systemd user service, and look at it.

Imported only when one of them runs (`cli.LAZY`): the daemon itself does not pay for
systemctl's subprocess, the unit file's shutil or the status line's statistics.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import click

from plurcast import clikit, cliparse, queue, service, stats
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

# --- the systemd user service --------------------------------------------------------------


def no_user_manager(exc: service.NoUserManager, action: str, done: str = "") -> NoReturn:
    """One `Error:` line, then what to run by hand once a user manager is there."""
    raise RuntimeFailure(
        f"{exc}{done}",
        f"run these from a login session of {service.user_name()}:",
        details=service.manual_steps(action),
    ) from exc


@click.command(cls=clikit.Command)
@cliparse.option("--now", "start", is_flag=True, help="Also start it now (else at next login).")
def install(start: bool) -> None:
    """Install plur-send as a systemd user service and enable it.

    Writes plur-send.service to $XDG_CONFIG_HOME/systemd/user/ with ExecStart set to this
    installation's plur-send (and PLURCAST_CONFIG, PLURCAST_DB_PATH or PLURCAST_DATABASE_URL
    when this shell sets them), then reloads systemd and enables the unit. Running it again
    rewrites the unit; 'plur-send restart' then applies it to a running service.

    \b
    Example:
      plur-send install --now && plur-send status
    """
    cfg = config_module.load()
    path, settings = service.write_unit(cfg)
    click.echo(f"wrote {path} (ExecStart={settings.exec_start})")
    if cfg.database_url and os.environ.get("PGPASSWORD"):
        sys.stderr.write(
            "Hint: the service does not see this shell's PGPASSWORD; put the password in "
            "~/.pgpass, which it reads\n"
        )
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


@click.command(cls=clikit.Command)
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
    return click.command(action, cls=clikit.Command)(control)


start_cmd = _control_command("start", "Start the service (systemctl --user start).", "started")
stop_cmd = _control_command(
    "stop", "Stop the service; in-flight deliveries finish first.", "stopped"
)
restart_cmd = _control_command(
    "restart", "Restart the service, e.g. after an upgrade.", "restarted"
)


@click.command("logs", cls=clikit.Command)
@cliparse.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they come.")
@cliparse.option(
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


@click.command(cls=clikit.Command)
@clikit.format_option
def health(fmt: Format) -> None:
    """Exit 0 when a plur-send daemon beat its heartbeat in the last 30 s, else 1.

    For monitoring: any daemon using this database counts, under systemd or not.
    """
    cfg = config_module.load()
    conn = queue.open_db(cfg, create=False)
    now = clikit.now(conn)
    daemon = daemon_health(conn, to_ms(now))
    if fmt != "text":
        emit_json(daemon_json(daemon, cfg.timezone), fmt)
    elif daemon.running:
        emit_lines([f"ok: plur-send {heartbeat_text(daemon, now)}"])
    if not daemon.running:
        raise RuntimeFailure(absence_text(daemon, now), "start it: plur-send start (or plur-send)")


@click.command(cls=clikit.Command)
@clikit.format_option
def status(fmt: Format) -> None:
    """The service as systemd sees it, the daemon's heartbeat, and the queue.

    Warns when posts are overdue and no daemon is running.
    """
    cfg = config_module.load()
    conn = queue.open_db(cfg, create=False)
    now = clikit.now(conn)
    unit: dict[str, str] | None
    try:
        unit = service.show()
        manager_problem = None
    except service.NoUserManager as exc:
        unit, manager_problem = None, exc.reason
    result = stats.compute(conn, now, cfg.timezone)
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


COMMANDS = (install, uninstall, start_cmd, stop_cmd, restart_cmd, logs_cmd, health, status)
