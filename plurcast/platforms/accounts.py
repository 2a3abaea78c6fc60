"""One platform account's settings, as every adapter reads them.

The platform's own section is the `default` account; a named account
(`[accounts.<platform>.NAME]`) takes what it does not set from the default one —
except secrets, which each adapter reads from the account's own settings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError
from plurcast.platforms import registry


@dataclass(frozen=True)
class Account:
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
