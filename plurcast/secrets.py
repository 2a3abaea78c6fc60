"""Secrets (keys, tokens, app passwords): from a private file, or from the environment.

A secret file must be a regular file that only its owner can read (mode 0600 or
0400): one readable by group or other is refused with the `chmod 600` fix, the way
ssh refuses a private key. The environment variable (`PLURCAST_NOSTR_KEY`, …) is
honoured for a platform's `default` account only; callers pass `None` for named
accounts. Messages never contain the secret itself.

Every secret read through `secret` is remembered for the life of the process, and
`redact` takes each of them out of a text: error texts are redacted before they are
stored, printed or logged, so a server that echoes the token back cannot leak it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from plurcast.config import setting_path
from plurcast.errors import ConfigError

# Nobody keeps a key, token or password in a file this big; reading stops here.
MAX_SECRET_BYTES = 64 * 1024
# Shorter secrets are not taken out of texts: every "test" or "1234" in a message would go.
MIN_REDACTED_CHARS = 8
REDACTED = "[redacted]"

# Longest first, so that none is left in part; sorted as each is noted, not at each `redact`
# (every log record and stored error goes through it).
_known: list[str] = []


def remember(value: str) -> str:
    """Note `value` as a secret for `redact`; returns it."""
    if len(value) >= MIN_REDACTED_CHARS and value not in _known:
        _known.append(value)
        _known.sort(key=len, reverse=True)
    return value


def redact(text: str) -> str:
    """`text` without any secret this process has read."""
    for value in _known:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _create_hint(path: Path, what: str) -> str:
    return f"put the {what} in it, readable only by you: (umask 077; cat > {path})"


def read_secret_file(path: Path, what: str) -> str:
    """The stripped content of a secret file that only its owner can read.

    `~` is expanded. The file is opened first and then checked through its
    descriptor, so what is checked is what is read (a symlink is followed and its
    target checked).
    """
    path = Path(path).expanduser()
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist", _create_hint(path, what)) from None
    except PermissionError:
        raise ConfigError(
            f"cannot read {what} file {path}: permission denied",
            f"it must be your own file, mode 600: check `ls -l {path}`",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{what} file {path} is not a regular file", _create_hint(path, what))
        if info.st_mode & 0o077:
            raise ConfigError(f"{path} is readable by other users", f"chmod 600 {path}")
        try:
            raw = os.read(fd, MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(
            f"{what} file {path} is too large to be a secret (over {MAX_SECRET_BYTES // 1024} KiB)",
            f"put only the {what} in it",
        )
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {path} is not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{what} file {path} is empty", _create_hint(path, what))
    return text


def secret(
    settings: dict[str, Any],
    key_file_setting: str,
    env_var: str | None,
    what: str,
    cfg_path: Path | str | None,
    *,
    section: str | None = None,
) -> str:
    """One account's secret: `env_var` if set and non-empty, else the file named in settings.

    `env_var` is None for named accounts (the environment speaks for the default
    account only). A relative file name is taken relative to the config file's
    directory, so the daemon (which runs in `/`) reads the same file as the CLI.
    `section` names the config table for the message when the setting is missing,
    e.g. `nostr` or `accounts.nostr.test`.
    """
    if env_var:
        value = os.environ.get(env_var, "").strip()
        if value:
            return remember(value)
    where = f"[{section}]" if section else "the account's section"
    in_file = f" in {cfg_path}" if cfg_path else ""
    setting = settings.get(key_file_setting)
    if setting is None or setting == "":
        hint = f'add {key_file_setting} = "<path to a mode 600 file>" to {where}{in_file}'
        if env_var:
            hint += f", or set {env_var}"
        raise ConfigError(f"no {what} configured", hint)
    if not isinstance(setting, str):
        raise ConfigError(
            f"{cfg_path or 'config'}: {section + '.' if section else ''}{key_file_setting} "
            "must be a file path (a string)"
        )
    return remember(read_secret_file(setting_path(setting, cfg_path), what))
