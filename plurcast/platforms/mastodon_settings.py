"""A Mastodon account's settings, read and checked without Mastodon.py: the instance, the
token, visibility and timeout (see plurcast.platforms.mastodon for what each means).

plur-post checks every post's accounts (`check_credentials`, through the registry) before
anything is sent, so this module stays free of the publisher: a scheduling plur-post never
imports the adapter (issue #16).
"""

from __future__ import annotations

from plurcast.config import Config
from plurcast.errors import ConfigError
from plurcast.platforms import accounts
from plurcast.platforms.accounts import Account

PLATFORM = "mastodon"
TOKEN_ENV = "PLURCAST_MASTODON_TOKEN"
DEFAULT_VISIBILITY = "public"
VISIBILITIES = ("public", "unlisted", "private", "direct")


def account_of(cfg: Config, account: str) -> Account:
    return accounts.account(cfg, PLATFORM, account, needs="instance and token_file")


def instance_url(value: str) -> str:
    """The API base URL for an `instance` setting: `https://host[:port]`, no path.

    A bare host gets https://. Raises ValueError (with the reason) for anything else
    than a server's address, and for http:// to another machine than this one.
    """
    from urllib.parse import urlsplit

    text = value.strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError("is empty or contains spaces")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("is not a server address") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise ValueError("is not a server address")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError("must be the server alone, without a path")
    if scheme == "http" and not accounts.plain_http_allowed(host):
        raise ValueError("must use https:// (http:// is allowed for this machine only)")
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")


def instance(acc: Account) -> str:
    value, table = acc.inherited("instance")
    if value is None:
        raise ConfigError(
            f"no Mastodon instance configured for account {acc.name}",
            f'add instance = "mastodon.social" (your server) to [{acc.section}] in {acc.cfg_path}',
        )
    if not isinstance(value, str):
        raise ConfigError(f"{acc.cfg_path}: {table}.instance must be a server name (a string)")
    try:
        return instance_url(value)
    except ValueError as exc:
        raise ConfigError(
            f"{acc.cfg_path}: {table}.instance {value!r} {exc}",
            'write it as "mastodon.social" or "https://mastodon.social"',
        ) from None


def visibility(acc: Account) -> str:
    value, table = acc.inherited("visibility")
    if value is None:
        return DEFAULT_VISIBILITY
    if value not in VISIBILITIES:
        raise ConfigError(
            f"{acc.cfg_path}: {table}.visibility must be one of {', '.join(VISIBILITIES)}"
        )
    return str(value)


def token(acc: Account) -> str:
    """The account's access token: $PLURCAST_MASTODON_TOKEN (default account) or token_file.

    Only the first line counts, so a token file written by Mastodon.py's
    `log_in(to_file=…)` (token, then the server's URL, …) works as it is.
    """
    found = accounts.secret(acc, "token_file", TOKEN_ENV, "Mastodon access token")
    token = found.text.splitlines()[0].strip()
    if not token or not all("!" <= char <= "~" for char in token):  # into an HTTP header
        raise ConfigError(
            f"{found.source} does not hold a Mastodon access token (one word, no spaces)",
            "copy the token from Preferences → Development → your application",
        )
    return token


def check_credentials(cfg: Config, account: str) -> None:
    """What plur-post checks at schedule time, without importing Mastodon.py.

    The instance is normalised, the token read (file mode, environment) and its
    shape checked, visibility and timeout validated. Raises ConfigError (exit 2).
    Whether the server accepts the token is only known when posting.
    """
    acc = account_of(cfg, account)
    instance(acc)
    token(acc)
    visibility(acc)
    accounts.timeout(acc)
