"""One platform account's settings, read the same way by every adapter.

The platform's own section is the `default` account; a named account
(`[accounts.<platform>.NAME]`) takes what it does not set from the default one —
except secrets, which each adapter reads from the account's own settings only (or, for
the default account, from the environment). What every adapter reads alike is here:
the account (`account`), its `timeout`, its `secret`, and whether plain http may reach
its server (`plain_http_allowed`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from plurcast import secrets
from plurcast.config import DEFAULT_ACCOUNT, Config, setting_path
from plurcast.errors import ConfigError
from plurcast.platforms import registry
from plurcast.value import Value

DEFAULT_TIMEOUT = 10.0  # seconds an adapter waits for its server
# A publish is abandoned after min(timeout + 5 s, 60 s) (engine.MAX_PUBLISH_SECONDS): a longer
# timeout would only be cut short, and inf or 1e300 made every send fail.
MAX_TIMEOUT = 55.0
# Plain http:// is refused for other hosts: a token, a password or a private image would cross
# the network in clear text.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Account(Value):
    platform: str
    name: str
    section: str  # the config table, for messages: "nostr" or "accounts.nostr.NAME"
    settings: dict[str, Any]
    defaults: dict[str, Any]  # the default account's settings ({} for the default itself)
    cfg_path: Path

    def inherited(self, key: str) -> tuple[Any, str]:
        """A setting of this account, else of the default account; with the table it came from."""
        if key in self.settings:
            return self.settings[key], self.section
        if key in self.defaults:
            return self.defaults[key], self.platform
        return None, self.section


def account(cfg: Config, platform: str, name: str, *, needs: str) -> Account:
    """`name`'s settings on `platform`, or a ConfigError saying which section to add.

    `needs` is what the platform's section must hold ("instance and token_file").
    """
    title = registry.get(platform).title
    section = cfg.platforms.get(platform)
    if section is None or name not in section.accounts:
        if name == DEFAULT_ACCOUNT:
            raise ConfigError(
                f"{title} is not configured",
                f"add a [{platform}] section with {needs} to {cfg.path}",
            )
        raise ConfigError(
            f'no {title} account "{name}"',
            f"add an [accounts.{platform}.{name}] section to {cfg.path}",
        )
    if name == DEFAULT_ACCOUNT:
        return Account(platform, name, platform, section.accounts[name], {}, cfg.path)
    return Account(
        platform,
        name,
        f"accounts.{platform}.{name}",
        section.accounts[name],
        section.accounts.get(DEFAULT_ACCOUNT, {}),
        cfg.path,
    )


def timeout(
    acc: Account,
    key: str = "timeout",
    default: float = DEFAULT_TIMEOUT,
    maximum: float = MAX_TIMEOUT,
) -> float:
    """The account's `timeout` (or another number of seconds, `key`): its own, else the
    default account's; above 0 and at most `maximum`."""
    value, table = acc.inherited(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= maximum:
        raise ConfigError(
            f"{acc.cfg_path}: {table}.{key} must be a number of seconds above 0 and at most "
            f"{maximum:g}",
            f"e.g. {key} = {default:g}",
        )
    return float(value)


class Secret(Value):
    text: str
    source: str  # where it came from, for messages: the variable's name or the file's path


def secret(acc: Account, setting: str, env_var: str, what: str) -> Secret:
    """The account's secret: `env_var` when set, for the default account only; else the
    mode-600 file its `setting` names (relative to the config file). ConfigError otherwise."""
    env = env_var if acc.name == DEFAULT_ACCOUNT else None
    text = secrets.secret(acc.settings, setting, env, what, acc.cfg_path, section=acc.section)
    if env and os.environ.get(env, "").strip():
        return Secret(text, env)
    return Secret(text, str(setting_path(str(acc.settings[setting]), acc.cfg_path)))


def plain_http_allowed(host: str | None) -> bool:
    """Whether an http:// server address is acceptable: only for this machine."""
    return (host or "").lower() in LOOPBACK_HOSTS
