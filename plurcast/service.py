"""plur-send as a systemd user service: the unit file, and install/uninstall/control through
`systemctl --user`.

The unit text is made here and nowhere else: `systemd/plur-send.service` in the repository is
this module's output with the default paths (`python -m plurcast.service` regenerates it, and a
test fails when they differ), and `plur-send install` writes the same text with the paths of
the installation that runs it. So a wheel needs no data file, and the two cannot drift apart.

Every systemctl, journalctl and loginctl call goes through `run_tool`, which runs the binary
found on PATH: tests put recording fakes there.
"""

from __future__ import annotations

import getpass
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from plurcast.config import Config, config_path, default_db_path
from plurcast.errors import RuntimeFailure
from plurcast.store.base import has_password
from plurcast.value import Value

UNIT_NAME = "plur-send.service"
# Where `pip install --user` and pipx put the script; `install` writes the real one.
DEFAULT_EXEC_START = "%h/.local/bin/plur-send"
DEFAULT_DATA_DIR = "%h/.local/share/plurcast"
# Above the daemon's default shutdown_timeout (20 s): a stop must not SIGKILL a delivery
# that is still allowed to finish.
STOP_TIMEOUT_MARGIN = 10
MIN_STOP_TIMEOUT = 30
# systemd's default; a configured startup_delay (slept before READY) is added to it.
START_TIMEOUT = 90

_UNIT = """\
# plur-send as a systemd user service. Made by `python -m plurcast.service`;
# `plur-send install` writes it with this installation's paths. By hand: copy it to
# ~/.config/systemd/user/, point ExecStart at plur-send, then
#   systemctl --user daemon-reload && systemctl --user enable --now plur-send.service

[Unit]
Description=Plurcast: publish scheduled posts (plur-send)

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
{environment}\
Restart=on-failure
RestartSec=5
# A config error (2) or a bad option (3) will not mend itself by restarting.
RestartPreventExitStatus=2 3
WatchdogSec=30
{start_timeout}\
TimeoutStopSec={stop_timeout}
KillMode=mixed
KillSignal=SIGTERM

# Sandbox: read-only system and home, writable data dir, network, nothing else.
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths={data_dir}
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
PrivateMounts=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
KeyringMode=private
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
SystemCallErrorNumber=EPERM
UMask=0077

[Install]
WantedBy=default.target
"""


class UnitSettings(Value):
    """What differs between installations, written as unit-file syntax; the defaults make
    the shipped file."""

    exec_start: str = DEFAULT_EXEC_START
    data_dir: str = DEFAULT_DATA_DIR
    environment: Sequence[str] = ()  # `KEY=value` words for Environment=
    secret: bool = False  # an Environment= value holds a password: the file is 0600
    stop_timeout: int = MIN_STOP_TIMEOUT
    start_timeout: int | None = None


SHIPPED = UnitSettings()


def render_unit(settings: UnitSettings = SHIPPED) -> str:
    return _UNIT.format(
        exec_start=settings.exec_start,
        environment="".join(f"Environment={word}\n" for word in settings.environment),
        data_dir=settings.data_dir,
        start_timeout=(
            f"TimeoutStartSec={settings.start_timeout}\n" if settings.start_timeout else ""
        ),
        stop_timeout=settings.stop_timeout,
    )


def unit_word(text: str, *, command: bool = False) -> str:
    """`text` as one word of a unit file: `%` (and in a command `$`) escaped, quoted when it
    holds blanks, quotes or backslashes."""
    word = text.replace("%", "%%")
    if command:
        word = word.replace("$", "$$")
    return _quoted(word)


def _quoted(word: str) -> str:
    if re.search(r"[\s\"'\\]", word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def _home_form(path: Path) -> str:
    """`path` as a unit-file word, as `%h/…` when it is under the home directory."""
    try:
        relative = path.relative_to(Path.home())
    except ValueError:
        return unit_word(str(path))
    return _quoted("%h/" + relative.as_posix().replace("%", "%%"))


def plur_send_command() -> list[str]:
    """How this installation's plur-send is started, as absolute paths.

    The running script when it is plur-send (keeping a pipx symlink as it is, so upgrades are
    followed); else the script beside this interpreter; else the module through the interpreter.
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "plur-send" and argv0.is_file():
        return [str(argv0.absolute())]
    sibling = Path(sys.executable).parent / "plur-send"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    return [str(Path(sys.executable).absolute()), "-m", "plur_send"]


def settings_for(cfg: Config) -> UnitSettings:
    """The unit for this installation and config.

    The service runs in systemd's environment, not this shell's: a config or database path
    that this shell finds through PLURCAST_* or XDG_* variables, or the database url it
    takes from PLURCAST_DATABASE_URL, is pinned with Environment=.
    """
    home = Path.home()
    pinned: list[tuple[str, str | Path]] = []
    config_file = config_path()
    if os.environ.get("PLURCAST_CONFIG") or config_file != home / ".config/plurcast/config.toml":
        pinned.append(("PLURCAST_CONFIG", config_file.absolute()))
    from_xdg = cfg.db_path == default_db_path()
    if os.environ.get("PLURCAST_DB_PATH") or (
        from_xdg and cfg.db_path != home / ".local/share/plurcast/posts.db"
    ):
        pinned.append(("PLURCAST_DB_PATH", cfg.db_path.absolute()))
    url = os.environ.get("PLURCAST_DATABASE_URL")
    if url:
        pinned.append(("PLURCAST_DATABASE_URL", url))
    scheduling = cfg.scheduling
    return UnitSettings(
        exec_start=" ".join(unit_word(word, command=True) for word in plur_send_command()),
        data_dir=_home_form(cfg.db_path.absolute().parent),
        environment=tuple(unit_word(f"{name}={path}") for name, path in pinned),
        secret=has_password(url) if url else False,
        stop_timeout=max(
            MIN_STOP_TIMEOUT, math.ceil(scheduling.shutdown_timeout) + STOP_TIMEOUT_MARGIN
        ),
        start_timeout=(
            START_TIMEOUT + math.ceil(scheduling.startup_delay)
            if scheduling.startup_delay
            else None
        ),
    )


def unit_path() -> Path:
    """Where the user's systemd looks for user units it may enable."""
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "systemd" / "user" / UNIT_NAME


# --- talking to systemd -------------------------------------------------------------------


class NoUserManager(RuntimeFailure):
    """`systemctl --user` has no user manager to talk to (no login session, or no systemd)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no systemd user manager to talk to ({reason})")
        self.reason = reason


class ServiceCommandFailed(RuntimeFailure):
    """systemctl answered, and said no."""


def run_tool(name: str, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `name` as found on PATH; FileNotFoundError when it is not there."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(name)
    return subprocess.run(
        [path, *args], capture_output=capture, text=True, check=False, stdin=subprocess.DEVNULL
    )


# What systemctl says when there is no user manager: no session bus (su, cron, ssh without
# pam_systemd; its message names XDG_RUNTIME_DIR when that is unset), or no systemd at all.
_NO_BUS = ("Failed to connect to bus", "not been booted with systemd")


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    """`systemctl --user ARGS`, raising NoUserManager or ServiceCommandFailed on failure."""
    try:
        result = run_tool("systemctl", "--user", *args)
    except FileNotFoundError:
        raise NoUserManager("systemctl is not installed") from None
    if result.returncode != 0:
        message = _last_line(result.stderr) or f"exit status {result.returncode}"
        if any(marker in result.stderr for marker in _NO_BUS):
            if not os.environ.get("XDG_RUNTIME_DIR"):
                message = "XDG_RUNTIME_DIR is not set: not a login session"
            raise NoUserManager(message)
        hint = "run 'plur-send install' first" if "not found" in message else None
        raise ServiceCommandFailed(
            f"systemctl --user {' '.join(args)} failed: {message}",
            hint or "see 'plur-send logs'",
        )
    return result


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def user_name() -> str:
    """The login name, for loginctl (from the environment, else the password database)."""
    return getpass.getuser()


def linger_enabled() -> bool | None:
    """Whether the user manager runs without a login (so the daemon survives logout and
    reboots); None when logind cannot be asked."""
    try:
        result = run_tool("loginctl", "show-user", user_name(), "-p", "Linger")
    except FileNotFoundError:
        return None
    if result.returncode != 0:
        return None
    value = result.stdout.strip().partition("=")[2]
    return {"yes": True, "no": False}.get(value)


def linger_command() -> str:
    return f"loginctl enable-linger {user_name()}"


def manual_steps(action: str) -> list[str]:
    """What to run by hand, from a real login session, when no user manager answers."""
    if action == "install":
        commands = [
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {UNIT_NAME}",
        ]
    elif action == "uninstall":
        commands = [
            f"systemctl --user disable --now {UNIT_NAME}",
            f"rm {unit_path()}",
            "systemctl --user daemon-reload",
        ]
    else:
        commands = [f"systemctl --user {action} {UNIT_NAME}"]
    return [
        *commands,
        f"{linger_command()}   # start your user manager at boot, without a login",
    ]


# --- what plur-send's subcommands do -------------------------------------------------------


def write_unit(cfg: Config) -> tuple[Path, UnitSettings]:
    """Write the unit (atomically) and make the data dir the sandbox leaves writable."""
    settings = settings_for(cfg)
    # ReadWritePaths= must exist when the service starts, and the sandboxed daemon could not
    # create it under a read-only home.
    cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
    path = unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.touch(0o600)
    partial.chmod(0o600 if settings.secret else 0o644)
    partial.write_text(render_unit(settings))
    partial.replace(path)
    return path, settings


def enable(start: bool) -> None:
    """Make systemd read the unit, enable it, and with `start` start it now."""
    systemctl("daemon-reload")
    systemctl("enable", UNIT_NAME)
    if start:
        systemctl("start", UNIT_NAME)


def uninstall() -> Path | None:
    """Stop, disable and remove the unit; None when it was not installed."""
    path = unit_path()
    if not path.exists():
        return None
    systemctl("disable", "--now", UNIT_NAME)
    path.unlink()
    systemctl("daemon-reload")
    return path


def control(action: str) -> None:
    """start, stop or restart the service."""
    systemctl(action, UNIT_NAME)


SHOWN = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "StatusText")


def show() -> dict[str, str]:
    """The unit's state as systemd sees it (`systemctl --user show`)."""
    result = systemctl("show", UNIT_NAME, *(f"--property={name}" for name in SHOWN))
    state = dict.fromkeys(SHOWN, "")
    for line in result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in state:
            state[key] = value
    return state


def journal(follow: bool, lines: int | None) -> int:
    """Show the service's journal (journalctl's own pager and colours); its exit status."""
    args = [f"--user-unit={UNIT_NAME}"]
    if lines is not None:
        args += ["--lines", str(lines)]
    if follow:
        args.append("--follow")
    try:
        return run_tool("journalctl", *args, capture=False).returncode
    except FileNotFoundError:
        raise RuntimeFailure(
            "journalctl is not installed",
            "plur-send logs to stderr when it runs outside systemd",
        ) from None


if __name__ == "__main__":
    sys.stdout.write(render_unit())
