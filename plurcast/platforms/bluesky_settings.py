"""A Bluesky account's settings, read and checked without atproto: the handle, the app password,
the PDS, the timeout and `cards_allow_private` (see plurcast.platforms.bluesky for what each means).

plur-post checks every post's accounts (`check_credentials`, through the registry) before
anything is sent, so this module stays free of the publisher: a scheduling plur-post never
imports the adapter (issue #16).
"""

from __future__ import annotations

from pathlib import Path

from plurcast.config import Config
from plurcast.errors import ConfigError
from plurcast.platforms import accounts
from plurcast.platforms.accounts import Account
from plurcast.platforms.bluesky_references import HANDLE

PLATFORM = "bluesky"
PASSWORD_ENV = "PLURCAST_BLUESKY_APP_PASSWORD"
DEFAULT_PDS = "https://bsky.social"


def account_of(cfg: Config, account: str) -> Account:
    return accounts.account(cfg, PLATFORM, account, needs="handle and app_password_file")


def normalise_handle(value: object, where: str) -> str:
    """The handle in canonical form (lower case, no leading @), after checking its syntax."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where}: handle must be a Bluesky handle such as alice.bsky.social",
            'write handle = "alice.bsky.social"',
        )
    handle = value.strip().removeprefix("@").lower()
    if len(handle) > 253 or not HANDLE.fullmatch(handle):
        raise ConfigError(
            f"{where}: {value!r} is not a Bluesky handle",
            "a handle looks like alice.bsky.social or a domain of your own (no did:, no URL)",
        )
    return handle


def handle(acc: Account) -> str:
    value = acc.settings.get("handle")
    if value is None:
        raise ConfigError(
            f"no Bluesky handle configured for account {acc.name}",
            f'add handle = "alice.bsky.social" to [{acc.section}] in {acc.cfg_path}',
        )
    return normalise_handle(value, f"{acc.cfg_path}: {acc.section}")


def normalise_pds(value: object, where: str) -> str:
    """The PDS base URL without a trailing slash; https, or http to this machine only."""
    from urllib.parse import urlsplit

    hint = 'write pds = "https://bsky.social" (or your own server\'s https:// URL)'
    if not isinstance(value, str):
        raise ConfigError(f"{where}: pds must be a URL", hint)
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{where}: pds {value!r} is not a URL", hint) from None
    scheme = parts.scheme.lower()
    if (
        not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in url)
        or scheme not in ("http", "https")
    ):
        raise ConfigError(f"{where}: pds {value!r} is not a server URL", hint)
    if scheme == "http" and not accounts.plain_http_allowed(parts.hostname):
        raise ConfigError(
            f"{where}: pds {value!r} uses plain http, which would send the password unencrypted",
            "use https:// (http:// is allowed only to 127.0.0.1 or localhost)",
        )
    return url


def pds(acc: Account) -> str:
    value, table = acc.inherited("pds")
    if value is None:
        return DEFAULT_PDS
    return normalise_pds(value, f"{acc.cfg_path}: {table}")


def cards_allow_private(acc: Account) -> bool:
    value, table = acc.inherited("cards_allow_private")
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{acc.cfg_path}: {table}.cards_allow_private must be true or false")
    return value


def app_password(acc: Account) -> str:
    """The account's app password, from the environment (default account) or its file."""
    return accounts.secret(acc, "app_password_file", PASSWORD_ENV, "Bluesky app password").text


def check_credentials(cfg: Config, account: str) -> None:
    """What plur-post checks at schedule time, without importing atproto or touching the network.

    The handle's syntax, the app password (file mode, environment), the pds URL and the
    timeout. Whether the server accepts the password is known only when the post is sent.
    Raises ConfigError (exit 2).
    """
    acc = account_of(cfg, account)
    handle(acc)
    app_password(acc)
    pds(acc)
    accounts.timeout(acc)
    cards_allow_private(acc)


def session_path(cfg: Config, account: str) -> Path:
    """Where the account's session is kept: beside the database, which is the user's own."""
    return cfg.db_path.expanduser().parent / "sessions" / f"{PLATFORM}-{account}.session"
