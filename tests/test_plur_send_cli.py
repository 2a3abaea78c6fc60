"""plur-send's service commands against recording fakes of systemctl, journalctl and loginctl.

The fakes are shell scripts first on PATH: each appends its argv to a file and answers what
the real tool would (including "Failed to connect to bus" when told the bus is down).
The tests that read the queue (heartbeats, status) run on both backends; the rest touch no
database and run once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import click
import pytest

from plur_send.cli import cli
from plurcast import config as config_module
from plurcast import queue, service
from plurcast.errors import RuntimeFailure
from plurcast.models import to_ms
from plurcast.store import daemons
from plurcast.store.connection import transaction
from tests.helpers import NOW, Clock, Run, add_post, assert_verified_and_hardened
from tests.peers.postgres import Backend

BIN = Path(sys.executable).parent
UNIT = "plur-send.service"

_SYSTEMCTL = """\
#!/bin/sh
echo "systemctl $*" >> "$FAKE_RECORD"
if [ "$FAKE_BUS" = down ]; then
    echo "Failed to connect to bus: No medium found" >&2
    exit 1
fi
unit="$XDG_CONFIG_HOME/systemd/user/plur-send.service"
case "$2" in
show)
    if [ -f "$unit" ]; then
        printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\n'
        printf 'UnitFileState=enabled\\nMainPID=4242\\nStatusText=1 queued, 0 sending\\n'
    else
        printf 'LoadState=not-found\\nActiveState=inactive\\nSubState=dead\\n'
        printf 'UnitFileState=\\nMainPID=0\\nStatusText=\\n'
    fi ;;
enable)
    echo "Created symlink $XDG_CONFIG_HOME/systemd/user/default.target.wants/$3 → $unit." >&2 ;;
start|stop|restart)
    if [ ! -f "$unit" ]; then
        echo "Failed to $2 $3: Unit $3 not found." >&2
        exit 5
    fi ;;
esac
"""

_JOURNALCTL = """\
#!/bin/sh
echo "journalctl $*" >> "$FAKE_RECORD"
echo "Nov 22 10:04:43 host plur-send[4242]: plur-send 0.1.0 started"
"""

_LOGINCTL = """\
#!/bin/sh
echo "loginctl $*" >> "$FAKE_RECORD"
if [ "$FAKE_BUS" = down ]; then
    echo "Failed to connect to bus: No medium found" >&2
    exit 1
fi
echo "Linger=${FAKE_LINGER:-no}"
"""


class FakeSystemd:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bin = root / "fake-bin"
        self.bin.mkdir()
        self.record = root / "calls"
        self.record.touch()
        for name, script in (
            ("systemctl", _SYSTEMCTL),
            ("journalctl", _JOURNALCTL),
            ("loginctl", _LOGINCTL),
        ):
            (self.bin / name).write_text(script)
            (self.bin / name).chmod(0o755)
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_RECORD", str(self.record))
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(root))
        monkeypatch.setenv("USER", "alice")
        monkeypatch.delenv("FAKE_BUS", raising=False)
        monkeypatch.delenv("FAKE_LINGER", raising=False)

    def calls(self) -> list[str]:
        lines = self.record.read_text().splitlines()
        self.record.write_text("")
        return lines

    def bus_down(self) -> None:
        self.monkeypatch.setenv("FAKE_BUS", "down")


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystemd:
    return FakeSystemd(tmp_path, monkeypatch)


def unit_file() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user" / UNIT


# --- install / uninstall --------------------------------------------------------------------


def test_install_now_writes_the_unit_reloads_enables_starts(
    configured: Path, fake_systemd: FakeSystemd, run: Run
) -> None:
    result = run(cli, "install", "--now")
    assert result.exit_code == 0, result.stderr
    assert fake_systemd.calls() == [
        "systemctl --user daemon-reload",
        f"systemctl --user enable {UNIT}",
        f"systemctl --user start {UNIT}",
        "loginctl show-user alice -p Linger",
    ]
    text = unit_file().read_text()
    assert text == service.render_unit(service.settings_for(config_module.load()))
    assert f"\nExecStart={BIN / 'plur-send'}\n" in text
    assert "\nReadWritePaths=%h/.local/share/plurcast\n" in text
    assert "Environment=" not in text  # this test's paths are the defaults
    assert (Path.home() / ".local/share/plurcast").is_dir(), "ReadWritePaths= must exist"
    assert result.stdout == (
        f"wrote {unit_file()} (ExecStart={BIN / 'plur-send'})\nenabled {UNIT}: started now\n"
    )
    assert result.stderr == (
        "Hint: systemd stops your services when you log out. To keep plur-send running while "
        "logged out and start it at boot: loginctl enable-linger alice\n"
    )


def test_install_without_now_only_enables_and_no_linger_hint_when_lingering(
    configured: Path, fake_systemd: FakeSystemd, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LINGER", "yes")
    result = run(cli, "install")
    assert result.exit_code == 0, result.stderr
    assert fake_systemd.calls() == [
        "systemctl --user daemon-reload",
        f"systemctl --user enable {UNIT}",
        "loginctl show-user alice -p Linger",
    ]
    assert result.stdout.endswith(
        f"enabled {UNIT}: it starts at your next login ('plur-send start' now)\n"
    )
    assert result.stderr == ""


def test_install_pins_the_paths_this_shell_uses(
    configured: Path,
    fake_systemd: FakeSystemd,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    db = tmp_path / "elsewhere" / "posts.db"
    monkeypatch.setenv("PLURCAST_CONFIG", str(configured))
    monkeypatch.setenv("PLURCAST_DB_PATH", str(db))
    assert run(cli, "install").exit_code == 0
    text = unit_file().read_text()
    assert f"\nEnvironment=PLURCAST_CONFIG={configured}\n" in text
    assert f"\nEnvironment=PLURCAST_DB_PATH={db}\n" in text
    assert f"\nReadWritePaths={db.parent}\n" in text


def test_install_pins_the_database_url_and_keeps_its_password_private(
    tmp_path: Path,
    configured: Path,
    fake_systemd: FakeSystemd,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A queue on PostgreSQL that this shell names by PLURCAST_DATABASE_URL is the service's
    too; with a password in it the unit is readable by its owner only (and the shell's
    PGPASSWORD, which the service will not see, gets a hint). The sandbox still lets the
    daemon reach the server: Internet and local sockets, the host's network (systemd's own
    verdict), and the unit verifies."""
    url = "postgresql://plur:s3cret@db.example:5432/plurcast?options=-csearch_path%3Dplurcast"
    monkeypatch.setenv("PLURCAST_DATABASE_URL", url)
    monkeypatch.setenv("PGPASSWORD", "elsewhere")
    result = run(cli, "install")
    assert result.exit_code == 0, result.stderr
    text = unit_file().read_text()
    assert "\nEnvironment=PLURCAST_DATABASE_URL=" + url.replace("%", "%%") + "\n" in text
    assert unit_file().stat().st_mode & 0o777 == 0o600
    assert "PGPASSWORD" in result.stderr and "~/.pgpass" in result.stderr
    assert_verified_and_hardened(unit_file(), tmp_path)
    verdict = reach(unit_file(), tmp_path)
    assert "✗ RestrictAddressFamilies=~AF_(INET|INET6)" in verdict  # ✗: allowed
    assert "✗ RestrictAddressFamilies=~AF_UNIX" in verdict  # /run/postgresql
    assert "✗ PrivateNetwork=" in verdict
    monkeypatch.setenv("PLURCAST_DATABASE_URL", "postgresql://plur@db.example/plurcast")
    assert run(cli, "install").exit_code == 0
    assert "\nEnvironment=PLURCAST_DATABASE_URL=postgresql://plur@db.example/plurcast\n" in (
        unit_file().read_text()
    )
    assert unit_file().stat().st_mode & 0o777 == 0o644


def reach(unit: Path, tmp_path: Path) -> str:
    """systemd-analyze security's lines about the network, for `unit`."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    security = subprocess.run(
        ["systemd-analyze", "--user", "security", "--offline=yes", "--no-pager", str(unit)],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        check=False,
    )
    return "\n".join(
        line for line in security.stdout.splitlines() if "Network" in line or "AF_" in line
    )


def test_installed_unit_verifies_and_is_hardened(
    tmp_path: Path,
    configured: Path,
    fake_systemd: FakeSystemd,
    run: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A blank and a % in the data dir: both must be escaped for systemd.
    monkeypatch.setenv("PLURCAST_DB_PATH", str(tmp_path / "my data 100%" / "posts.db"))
    result = run(cli, "install")
    assert result.exit_code == 0, result.stderr
    text = unit_file().read_text()
    assert f'\nReadWritePaths="{tmp_path}/my data 100%%"\n' in text
    assert f'\nEnvironment="PLURCAST_DB_PATH={tmp_path}/my data 100%%/posts.db"\n' in text
    assert_verified_and_hardened(unit_file(), tmp_path)


def test_uninstall_stops_disables_and_removes(
    configured: Path, fake_systemd: FakeSystemd, run: Run
) -> None:
    run(cli, "install", "--now")
    fake_systemd.calls()
    result = run(cli, "uninstall")
    assert result.exit_code == 0, result.stderr
    assert fake_systemd.calls() == [
        f"systemctl --user disable --now {UNIT}",
        "systemctl --user daemon-reload",
    ]
    assert not unit_file().exists()
    assert result.stdout == f"stopped and disabled {UNIT}, removed {unit_file()}\n"


def test_uninstall_when_not_installed_changes_nothing(
    configured: Path, fake_systemd: FakeSystemd, run: Run
) -> None:
    result = run(cli, "uninstall")
    assert result.exit_code == 0
    assert result.stderr == f"{UNIT} is not installed (no {unit_file()})\n"
    assert fake_systemd.calls() == []


# --- start / stop / restart / logs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "done"), [("start", "started"), ("stop", "stopped"), ("restart", "restarted")]
)
def test_start_stop_restart(
    action: str, done: str, configured: Path, fake_systemd: FakeSystemd, run: Run
) -> None:
    run(cli, "install")
    fake_systemd.calls()
    result = run(cli, action)
    assert (result.exit_code, result.stdout) == (0, f"{done} {UNIT}\n")
    assert fake_systemd.calls() == [f"systemctl --user {action} {UNIT}"]


def test_start_before_install_says_to_install(fake_systemd: FakeSystemd, run: Run) -> None:
    result = run(cli, "start")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: systemctl --user start {UNIT} failed: Failed to start {UNIT}: "
        f"Unit {UNIT} not found. — run 'plur-send install' first\n"
    )


def test_logs_runs_journalctl_for_the_unit(
    fake_systemd: FakeSystemd, run: Run, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run(cli, "logs", "-n", "20", "-f")
    assert result.exit_code == 0
    assert fake_systemd.calls() == [f"journalctl --user-unit={UNIT} --lines 20 --follow"]
    # journalctl writes to the terminal itself (its pager, its colours).
    assert "plur-send 0.1.0 started" in capfd.readouterr().out
    run(cli, "logs")
    assert fake_systemd.calls() == [f"journalctl --user-unit={UNIT}"]


# --- no user manager ------------------------------------------------------------------------


def test_install_without_a_user_bus_writes_the_unit_and_gives_the_steps(
    configured: Path, fake_systemd: FakeSystemd, run: Run
) -> None:
    fake_systemd.bus_down()
    result = run(cli, "install", "--now")
    assert result.exit_code == 1
    assert unit_file().exists()
    assert result.stderr == (
        "Error: no systemd user manager to talk to (Failed to connect to bus: No medium found)"
        "; the unit file is written — run these from a login session of alice:\n"
        "  systemctl --user daemon-reload\n"
        f"  systemctl --user enable --now {UNIT}\n"
        "  loginctl enable-linger alice   # start your user manager at boot, without a login\n"
    )
    assert fake_systemd.calls() == ["systemctl --user daemon-reload"]


def test_without_xdg_runtime_dir_the_reason_says_so(
    fake_systemd: FakeSystemd, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_systemd.bus_down()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    result = run(cli, "stop")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "Error: no systemd user manager to talk to (XDG_RUNTIME_DIR is not set: not a login "
        "session) — run these from a login session of alice:",
        f"  systemctl --user stop {UNIT}",
    ]


def test_without_systemctl_at_all(
    configured: Path, fake_systemd: FakeSystemd, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    (fake_systemd.bin / "systemctl").unlink()
    monkeypatch.setenv("PATH", str(fake_systemd.bin))
    result = run(cli, "uninstall")
    assert result.exit_code == 0  # nothing installed: nothing to ask systemctl
    run_result = run(cli, "install")
    assert run_result.exit_code == 1
    assert run_result.stderr.startswith(
        "Error: no systemd user manager to talk to (systemctl is not installed)"
    )


def test_status_without_a_user_bus_still_reports_heartbeat_and_queue(
    configured: Path, fake_systemd: FakeSystemd, run: Run, clock: Clock
) -> None:
    fake_systemd.bus_down()
    result = run(cli, "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "service: unknown: no systemd user manager (Failed to connect to bus: No medium found)\n"
        "daemon:  not running\n"
        "queue:   0 scheduled\n"
    )


# --- status and health ----------------------------------------------------------------------

Beat = Callable[..., None]


@pytest.fixture
def beat(configured: Path, backend: Backend) -> Beat:
    """Write a daemon heartbeat row, `ago` before the test clock's now (on each backend)."""

    def write(ago: timedelta) -> None:
        conn = queue.open_db(config_module.load())
        with transaction(conn):
            daemons.beat(conn, "host-a:4242:1", "host-a", 4242, 0, to_ms(NOW - ago), "0.1.0")
        conn.close()

    return write


def schedule_post(at_offset: timedelta) -> None:
    cfg = config_module.load()
    conn = queue.open_db(cfg)
    at = (NOW + at_offset).timestamp()
    add_post(conn, cfg, "hello", at, now=at - 60)
    conn.close()


def test_health_is_0_only_with_a_fresh_heartbeat(
    configured: Path, beat: Beat, run: Run, clock: Clock
) -> None:
    result = run(cli, "health")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        "Error: no plur-send daemon has run on this database — start it: plur-send start "
        "(or plur-send)\n"
    )
    beat(timedelta(seconds=2))
    result = run(cli, "health")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "ok: plur-send pid 4242 on host-a, last heartbeat 2s ago\n"
    clock.advance(seconds=60)
    result = run(cli, "health")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no heartbeat from plur-send: pid 4242 on host-a, last heartbeat 1m 2s ago — "
        "start it: plur-send start (or plur-send)\n"
    )


def test_plur_send_errors_are_clikit_errors(
    configured: Path, run: Run, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like every command's: PLURCAST_DEBUG=1 shows the exception instead of the line."""
    monkeypatch.setenv("PLURCAST_DEBUG", "1")
    with pytest.raises(RuntimeFailure, match="no plur-send daemon has run on this database"):
        run(cli, "health")


def test_health_json(configured: Path, beat: Beat, run: Run, clock: Clock) -> None:
    import json

    beat(timedelta(seconds=40))
    result = run(cli, "health", "-f", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "running": False,
        "host": "host-a",
        "pid": 4242,
        "last_heartbeat": int((NOW - timedelta(seconds=40)).timestamp()),
        "last_heartbeat_iso": "2026-11-22T11:04:03+01:00",
    }


def test_status_shows_systemd_heartbeat_and_queue(
    configured: Path, fake_systemd: FakeSystemd, beat: Beat, run: Run, clock: Clock
) -> None:
    run(cli, "install", "--now")
    fake_systemd.calls()
    beat(timedelta(seconds=3))
    schedule_post(timedelta(minutes=30))
    result = run(cli, "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "service: active (running), enabled, pid 4242\n"
        "status:  1 queued, 0 sending\n"
        "daemon:  running, pid 4242 on host-a, last heartbeat 3s ago\n"
        "queue:   1 scheduled (1 next hour)\n"
    )
    assert result.stderr == ""
    assert fake_systemd.calls() == [
        "systemctl --user show plur-send.service --property=LoadState --property=ActiveState "
        "--property=SubState --property=UnitFileState --property=MainPID --property=StatusText"
    ]


def test_status_warns_when_posts_are_overdue_and_no_daemon_runs(
    configured: Path, fake_systemd: FakeSystemd, beat: Beat, run: Run, clock: Clock
) -> None:
    beat(timedelta(minutes=10))
    schedule_post(timedelta(minutes=-5))
    result = run(cli, "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "service: not installed (plur-send install)\n"
        "daemon:  not running, pid 4242 on host-a, last heartbeat 10m ago\n"
        "queue:   1 scheduled (1 overdue)\n"
    )
    assert result.stderr == (
        "Warning: 1 post is overdue and no plur-send daemon is running — start it: "
        "plur-send start (or plur-send)\n"
    )


# --- the command line itself ----------------------------------------------------------------


def test_every_command_has_help(run: Run) -> None:
    assert cli.help
    for name, command in {"": cli, **cli.commands}.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option) and param.name not in ("help", "version"):
                assert param.help, f"{name} {param.opts}"
        result = run(cli, *name.split(), "--help")
        assert result.exit_code == 0


def test_daemon_options_do_not_go_with_a_command(run: Run) -> None:
    result = run(cli, "--once", "-v", "status")
    assert result.exit_code == 3
    assert result.stderr == (
        "Error: --once, --verbose runs the daemon and cannot go with 'status' — "
        "see 'plur-send --help'\n"
    )


def test_exec_start_is_this_installation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "bin" / "plur-send"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(script), "install"])
    assert service.plur_send_command() == [str(script)]
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert service.plur_send_command() == [str(BIN / "plur-send")]
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    assert service.plur_send_command() == [str(tmp_path / "python3"), "-m", "plur_send"]


def test_python_m_plur_send_runs_plur_send() -> None:
    """The ExecStart of last resort."""
    result = subprocess.run(
        [sys.executable, "-m", "plur_send", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "plur-send, version 0.1.0\n")
