"""A Nostr account's settings, read and checked without nostr_sdk: the key, the relays,
min_relays, timeouts, proof of work and Blossom servers (see plurcast.platforms.nostr for
what each means).

plur-post checks every post's accounts (`check_credentials`, `check_images`, through the
registry) and reads the proof of work it asks for (`pow_metadata`) before anything is
sent, so this module stays free of the publisher and what only it needs: a scheduling
plur-post never imports the adapter (issue #16).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plurcast.config import DEFAULT_ACCOUNT, Config
from plurcast.errors import ConfigError, InvalidInput
from plurcast.platforms import accounts, nostr_pow
from plurcast.platforms.accounts import Account
from plurcast.platforms.nip19 import bech32_payload, is_hex64

if TYPE_CHECKING:
    from plurcast.models import Post

PLATFORM = "nostr"
KEY_ENV = "PLURCAST_NOSTR_KEY"
DEFAULT_MIN_RELAYS = 1

KEY_SHAPE = "nsec1… or 64 hex characters"
# Order of secp256k1: a secret key is an integer in [1, N-1].
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def account_of(cfg: Config, account: str) -> Account:
    return accounts.account(cfg, PLATFORM, account, needs="keys_file and relays")


def _valid_relay_url(url: str) -> bool:
    from urllib.parse import urlsplit

    if not url or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme.lower() in ("ws", "wss") and bool(parts.hostname)


def relay_urls(acc: Account) -> list[str]:
    value, table = acc.inherited("relays")
    if value is None:
        raise ConfigError(
            f"no Nostr relays configured for account {acc.name}",
            f'add relays = ["wss://…"] to [{acc.section}] in {acc.cfg_path}',
        )
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{acc.cfg_path}: {table}.relays must be a non-empty list of ws:// or wss:// URLs"
        )
    urls: list[str] = []
    for url in value:
        if not isinstance(url, str) or not _valid_relay_url(url.strip()):
            raise ConfigError(
                f"{acc.cfg_path}: {table}.relays: {url!r} is not a ws:// or wss:// URL",
                'write relays as "wss://relay.example"',
            )
        if url.strip() not in urls:
            urls.append(url.strip())
    return urls


def min_relays(acc: Account, relay_count: int) -> int:
    value, table = acc.inherited("min_relays")
    if value is None:
        return DEFAULT_MIN_RELAYS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= relay_count:
        raise ConfigError(
            f"{acc.cfg_path}: {table}.min_relays must be a whole number from 1 to "
            f"{relay_count} (the number of relays)"
        )
    return value


def default_pow(acc: Account) -> int:
    value, table = acc.inherited("default_pow_difficulty")
    if value is None:
        return 0
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 0 <= value <= nostr_pow.MAX_DIFFICULTY
    ):
        raise ConfigError(
            f"{acc.cfg_path}: {table}.default_pow_difficulty must be a whole number from 0 to "
            f"{nostr_pow.MAX_DIFFICULTY}"
        )
    return value


def pow_timeout(acc: Account) -> float:
    return accounts.timeout(
        acc, "pow_timeout", nostr_pow.DEFAULT_TIMEOUT, maximum=nostr_pow.MAX_TIMEOUT
    )


def pow_metadata(
    cfg: Config, account: str | None, difficulty: int | None, pattern_21e8: bool = False
) -> dict[str, object]:
    """What a post stores for proof of work: `--nostr-pow N`, else the account's
    `default_pow_difficulty`; {} when neither asks for any."""
    if pattern_21e8 and difficulty is None:
        raise InvalidInput("--21e8 requires --nostr-pow to be specified", "add --nostr-pow N")
    if difficulty is not None:
        nostr_pow.check_difficulty(difficulty)
    elif PLATFORM in cfg.platforms:
        known = cfg.platforms[PLATFORM].accounts
        name = account if account in known else DEFAULT_ACCOUNT
        difficulty = default_pow(account_of(cfg, name)) if name in known else 0
    if not difficulty:
        return {}
    entry: dict[str, object] = {"pow_difficulty": difficulty}
    if pattern_21e8:
        entry["21e8"] = True
    return {PLATFORM: entry}


def with_pow(difficulty: int) -> Callable[[Post, dict[str, Any]], dict[str, Any]]:
    """A metadata change for `plur-queue update ID --nostr-pow N` (0 removes the work)."""
    nostr_pow.check_difficulty(difficulty)

    def change(post: Post, metadata: dict[str, Any]) -> dict[str, Any]:
        if PLATFORM not in post.platforms:
            raise InvalidInput(
                f"post {post.id} does not go to Nostr", "proof of work is for Nostr only"
            )
        entry = dict(metadata.get(PLATFORM) or {})
        entry.pop("pow_difficulty", None)
        if difficulty:
            entry["pow_difficulty"] = difficulty
        else:
            entry.pop("21e8", None)
        metadata.pop(PLATFORM, None)
        return {**metadata, PLATFORM: entry} if entry else metadata

    return change


def relays(cfg: Config, account: str) -> list[str]:
    """The account's relay URLs (named accounts without their own use the default's)."""
    return relay_urls(account_of(cfg, account))


def blossom_servers(acc: Account) -> list[str]:
    """The account's Blossom servers as base URLs (https, or http to this machine); [] if none."""
    from urllib.parse import urlsplit

    value, table = acc.inherited("blossom_servers")
    if value is None:
        return []
    hint = 'write blossom_servers = ["https://blossom.example"]'
    if not isinstance(value, list):
        raise ConfigError(f"{acc.cfg_path}: {table}.blossom_servers must be a list of URLs", hint)
    found: list[str] = []
    for url in value:
        text = url.strip().rstrip("/") if isinstance(url, str) else ""
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = urlsplit("")
        scheme = parts.scheme.lower()
        if (
            not parts.hostname
            or scheme not in ("http", "https")
            or parts.query
            or parts.fragment
            or any(c.isspace() for c in text)
        ):
            raise ConfigError(
                f"{acc.cfg_path}: {table}.blossom_servers: {url!r} is not a server URL", hint
            )
        if scheme == "http" and not accounts.plain_http_allowed(parts.hostname):
            raise ConfigError(
                f"{acc.cfg_path}: {table}.blossom_servers: {url!r} uses plain http",
                "use https:// (http:// is allowed only to 127.0.0.1 or localhost)",
            )
        if text not in found:
            found.append(text)
    return found


def check_images(cfg: Config, account: str) -> None:
    """A post with images needs somewhere to put them: at least one Blossom server."""
    acc = account_of(cfg, account)
    if not blossom_servers(acc):
        raise ConfigError(
            f"Nostr account {acc.name} has no Blossom server for images",
            f'add blossom_servers = ["https://…"] to [{acc.section}] in {acc.cfg_path} (a '
            "Blossom server that takes uploads from this key), or leave nostr out with -p",
        )


# --- keys ----------------------------------------------------------------------------


def _is_secret_key(raw: bytes | None) -> bool:
    return raw is not None and len(raw) == 32 and 0 < int.from_bytes(raw, "big") < _SECP256K1_N


def normalise_secret_key(text: str, source: str) -> str:
    """The key in the form nostr-sdk parses (lower case), after checking its shape.

    Pure Python (no nostr_sdk). `source` names where the key came from; the key
    itself never appears in a message.
    """
    key = text.strip()
    lower = key.lower()
    if lower.startswith("npub1"):
        raise ConfigError(
            f"{source} holds a Nostr public key (npub1…), not a secret key",
            "put the account's secret key (nsec1…) there",
        )
    if lower.startswith("nsec1"):
        if key in (lower, key.upper()) and _is_secret_key(bech32_payload(lower, "nsec")):
            return lower
    elif is_hex64(key) and _is_secret_key(bytes.fromhex(key)):
        return lower
    raise ConfigError(f"{source} is not a Nostr secret key ({KEY_SHAPE})")


def secret_key_text(acc: Account) -> str:
    """The account's key, checked for shape."""
    key = accounts.secret(acc, "keys_file", KEY_ENV, "Nostr secret key")
    return normalise_secret_key(key.text, key.source)


def check_credentials(cfg: Config, account: str) -> None:
    """What plur-post checks at schedule time, without importing nostr_sdk.

    The key is read (file mode, environment) and its shape checked, the relay list,
    min_relays, timeout and blossom_servers validated. Raises ConfigError (exit 2).
    """
    acc = account_of(cfg, account)
    secret_key_text(acc)
    min_relays(acc, len(relay_urls(acc)))
    accounts.timeout(acc)
    default_pow(acc)
    pow_timeout(acc)
    blossom_servers(acc)
