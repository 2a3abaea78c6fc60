"""Configuration: where things live, and what the user's config.toml says.

Every tool resolves paths the same way (cli.md):
config  = $PLURCAST_CONFIG, else $XDG_CONFIG_HOME/plurcast/config.toml
db      = $PLURCAST_DB_PATH, else [database] path, else $XDG_DATA_HOME/plurcast/posts.db

Keys are those of the original Rust tool, so existing config files keep working.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plurcast.errors import ConfigError, InvalidInput
from plurcast.platforms import registry
from plurcast.value import Value

DEFAULT_ACCOUNT = "default"
_ACCOUNT_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def is_account_name(name: str) -> bool:
    """1 to 64 of A–Z, a–z, 0–9, `_` and `-` (a set, not a pattern compiled on every start)."""
    return 0 < len(name) <= 64 and _ACCOUNT_NAME_CHARS.issuperset(name)


class Range(Value):
    """The values a number setting may take: finite, from `low` to `high`."""

    low: float
    high: float

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high

    def __str__(self) -> str:
        return f"from {self.low:g} to {self.high:,.10g}"


# Every number setting's range, checked when the config is read (and for plur-send's flags),
# so that nan, inf or 1e300 is a config error naming the key, never a crash hours later.
RANGES = {
    "busy_timeout": Range(0, 3600),
    "poll_interval": Range(0.1, 86400),
    "max_retries": Range(0, 1000),
    "retry_delay": Range(0, 86400),
    "max_concurrency": Range(1, 1000),
    "shutdown_timeout": Range(0, 3600),
    "grace": Range(0, 365 * 86400),
    "startup_delay": Range(0, 3600),
    "inter_retry_delay": Range(0, 86400),
    "posts_per_hour": Range(1, 1_000_000_000),  # huge: no limit of ours, in tests and benchmarks
}
_WRITE_AS = {
    str: 'a string, in quotes: "…"',
    bool: "true or false",
    int: "a whole number, without quotes",
    float: "a number, without quotes",
    list: 'a list, e.g. ["nostr", "mastodon"]',
}


class Scheduling(Value):
    """The [scheduling] table; defaults are the original tool's."""

    poll_interval: float = 60.0
    max_retries: int = 3
    retry_delay: float = 300.0
    max_concurrency: int = 8
    shutdown_timeout: float = 20.0
    grace: float | None = None
    startup_delay: float = 0.0
    posts_per_hour: Mapping[str, int] = MappingProxyType(registry.default_posts_per_hour())


class Platform(Value):
    """One platform section: the `default` account plus named accounts."""

    name: str
    enabled: bool
    accounts: dict[str, dict[str, Any]]


class Config(Value):
    path: Path
    exists: bool
    db_path: Path
    busy_timeout: float
    timezone: ZoneInfo
    default_platforms: tuple[str, ...]
    platforms: dict[str, Platform]
    scheduling: Scheduling
    # [slots]: platform name or "all" -> weekly (weekday, minute) slots (plurcast.slots)
    slots: Mapping[str, frozenset[tuple[int, int]]] = MappingProxyType({})
    # A PostgreSQL url when the queue is on a shared server; None: the SQLite file db_path.
    database_url: str | None = None
    # [defaults] require_alt: an image without alt text is refused, not only warned about
    require_alt: bool = False
    # [defaults] language: the posts' languages unless --lang says otherwise (canonical tags)
    languages: tuple[str, ...] = ()
    # [media] fit: re-encode an image over a platform's byte limit, as --fit does
    media_fit: bool = False

    def enabled_platforms(self) -> tuple[str, ...]:
        """Platforms whose own section is present and enabled (named accounts alone are not)."""
        return tuple(
            p
            for p in registry.NAMES
            if p in self.platforms
            and self.platforms[p].enabled
            and DEFAULT_ACCOUNT in self.platforms[p].accounts
        )

    def account_setting(self, platform: str, account: str, key: str) -> Any:
        """An account's setting, else the default account's; None when neither has it."""
        section = self.platforms.get(platform)
        if section is None:
            return None
        own = section.accounts.get(account, {})
        if key in own:
            return own[key]
        return section.accounts.get(DEFAULT_ACCOUNT, {}).get(key)


def _xdg(var: str, fallback: str) -> Path:
    """An XDG base directory; relative values are invalid by the spec and ignored."""
    value = os.environ.get(var)
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def config_path() -> Path:
    explicit = os.environ.get("PLURCAST_CONFIG")
    if explicit and not explicit.strip():
        raise ConfigError("PLURCAST_CONFIG is blank", "unset it, or name a TOML file")
    if explicit:
        return Path(explicit).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "plurcast" / "config.toml"


def setting_path(setting: str, cfg_path: Path | str | None) -> Path:
    """A file the config names: `~` expanded, a relative name taken relative to the config
    file's directory, so the daemon (which runs in `/`) uses the same file as the CLI."""
    path = Path(setting).expanduser()
    if not path.is_absolute() and cfg_path:
        path = Path(cfg_path).expanduser().parent / path
    return path


def default_db_path() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "plurcast" / "posts.db"


def system_timezone() -> ZoneInfo:
    """The machine's zone as an IANA zone, so DST is right (a fixed offset would not be)."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        return ZoneInfo(Path("/etc/timezone").read_text().strip())
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# Files in the zone directory that are not zones to schedule in: copies of the zones under
# another root (posix/ is the same, right/ counts leap seconds and shows wrong times), and the
# machine's own zone or rules under a name that means nothing elsewhere.
_NOT_ZONES = ("posix/", "right/")
_NOT_ZONE_NAMES = ("localtime", "posixrules")


def zone(name: str) -> ZoneInfo:
    """An IANA zone from user input (`--tz`, a zone in a time expression), or InvalidInput."""
    hint = 'use an IANA name such as "Europe/Berlin" or "UTC"'
    try:
        if not name or name != name.strip() or ".." in name or name in _NOT_ZONE_NAMES:
            raise ValueError(name)
        for prefix in _NOT_ZONES:
            if name.startswith(prefix):
                hint = f'use "{name.removeprefix(prefix)}"'
                raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, a long name
        raise InvalidInput(f'unknown timezone "{name}"', hint) from None


def validate_account_name(name: str) -> str:
    if not is_account_name(name):
        raise InvalidInput(
            f'invalid account name "{name}"',
            "use letters, digits, '-' and '_' (at most 64 characters)",
        )
    return name


def load() -> Config:
    """Read and validate the config file; a missing default file means "nothing configured"."""
    path = config_path()
    explicit = bool(os.environ.get("PLURCAST_CONFIG"))
    data: dict[str, Any] = {}
    exists = path.is_file()
    if exists:
        data = _read_toml(path)
    elif path.exists():  # a directory, a FIFO (reading it would hang), a device
        raise ConfigError(
            f"config file {path} is not a regular file",
            "unset PLURCAST_CONFIG or point it at a TOML file"
            if explicit
            else "move it aside, or set PLURCAST_CONFIG to a TOML file",
        )
    elif explicit:
        raise ConfigError(
            f"config file {path} (from PLURCAST_CONFIG) does not exist",
            "create it or unset PLURCAST_CONFIG",
        )
    cfg = _parse(path, exists, data)
    if data:
        from plurcast import config_keys

        config_keys.warn_unknown(path, data)
    return cfg


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        # A byte-order mark, as some Windows editors write one, is no TOML error.
        return tomllib.loads(raw.decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8", "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", "fix the TOML syntax there") from None
    except RecursionError:  # tomllib recurses once per level of [[[…]]] or {a = {b = …}}
        raise ConfigError(
            f"{path}: arrays or tables nested too deeply to read", "flatten them"
        ) from None


class _Reader:
    """Typed access to one table, naming the file and key in every complaint."""

    def __init__(self, path: Path, table: str, data: Any) -> None:
        self.path, self.table = path, table
        if not isinstance(data, dict):
            self.fail(table or "top level", "must be a table")
        self.data: dict[str, Any] = data

    def fail(self, key: str, what: str, hint: str | None = None) -> None:
        where = f"{self.table}.{key}" if self.table and key != self.table else key
        raise ConfigError(f"{self.path}: {where} {what}", hint)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.data.get(key, default)
        wanted = kind[-1] if isinstance(kind, tuple) else kind
        if value is not None and not isinstance(value, kind):
            self.fail(
                key, f"has the wrong type ({type(value).__name__})", f"write {_WRITE_AS[wanted]}"
            )
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(key, "must be a number", f"write {_WRITE_AS[wanted]}")
        return value

    def number(self, key: str, default: float | None) -> float | None:
        """A number in RANGES[key] (a whole one is fine too), or None when unset and no default."""
        value = self.get(key, (int, float), default)
        return None if value is None else float(self._in_range(key, value))

    def whole(self, key: str, default: int) -> int:
        """A whole number in RANGES[key]."""
        return int(self._in_range(key, self.get(key, int, default)))

    def _in_range(self, key: str, value: float) -> float:
        allowed = RANGES[key]
        if not allowed.holds(value):
            self.fail(key, f"must be {allowed} (it is {value:g})", "change it in the file")
        return value

    def table_of(self, key: str) -> _Reader:
        return _Reader(self.path, f"{self.table}.{key}" if self.table else key, self.data[key])


def _parse(path: Path, exists: bool, data: dict[str, Any]) -> Config:
    top = _Reader(path, "", data)
    tz_name = top.get("timezone", str)
    if tz_name is None:
        timezone = system_timezone()
    else:
        try:
            timezone = zone(tz_name)
        except InvalidInput:
            raise ConfigError(
                f'{path}: timezone "{tz_name}" is not a known IANA zone',
                'use a name such as "Europe/Berlin" or "UTC"',
            ) from None

    database = top.table_of("database") if "database" in data else _Reader(path, "database", {})
    env_db = os.environ.get("PLURCAST_DB_PATH")
    if env_db and not env_db.strip():
        raise ConfigError(
            "PLURCAST_DB_PATH is blank", "unset it, or set it to a file such as ~/posts.db"
        )
    db_setting = database.get("path", str)
    if db_setting is not None and not db_setting.strip():
        database.fail("path", "is blank", 'name a file, e.g. "~/posts.db", or remove the line')
    url_setting = database.get("url", str)
    if url_setting is not None and db_setting is not None:
        database.fail("url", "and database.path are both set; keep one of them")
    env_url = os.environ.get("PLURCAST_DATABASE_URL")
    url = env_url or (None if env_db else url_setting)
    database_url, url_path = _database_url(path, url, "PLURCAST_DATABASE_URL" if env_url else None)
    if url_path is not None:
        db_path = url_path
    elif env_db:
        db_path = Path(env_db).expanduser()
    elif db_setting:
        db_path = setting_path(db_setting, path)
    else:
        db_path = default_db_path()
    busy_timeout = database.number("busy_timeout", 5.0) or 0.0

    platforms = {name: _platform(top, name) for name in registry.NAMES if name in data}
    accounts = top.table_of("accounts") if "accounts" in data else None
    if accounts is not None:
        for platform_name in accounts.data:
            if platform_name not in registry.NAMES:
                accounts.fail(platform_name, f"is not a platform ({', '.join(registry.NAMES)})")
            named = accounts.table_of(platform_name)
            for account_name in named.data:
                if account_name == DEFAULT_ACCOUNT or not is_account_name(account_name):
                    named.fail(
                        account_name, "is not a valid account name (letters, digits, - and _)"
                    )
                settings = _account_settings(platform_name, named.table_of(account_name))
                platform = platforms.setdefault(platform_name, Platform(platform_name, True, {}))
                platform.accounts[account_name] = settings

    defaults = top.table_of("defaults") if "defaults" in data else _Reader(path, "defaults", {})
    default_platforms = defaults.get("platforms", list) or []
    for name in default_platforms:
        if name not in registry.NAMES:
            defaults.fail("platforms", f'names an unknown platform "{name}"')
    media = top.table_of("media") if "media" in data else _Reader(path, "media", {})

    return Config(
        path=path,
        exists=exists,
        db_path=db_path,
        busy_timeout=busy_timeout,
        timezone=timezone,
        default_platforms=tuple(default_platforms),
        platforms=platforms,
        scheduling=_scheduling(top),
        slots=_slots(top),
        require_alt=defaults.get("require_alt", bool, False),
        languages=_languages(defaults),
        media_fit=media.get("fit", bool, False),
        database_url=database_url,
    )


def _database_url(
    path: Path, url: str | None, from_env: str | None
) -> tuple[str | None, Path | None]:
    """(PostgreSQL url, None) or (None, SQLite path) from `[database] url`, or (None, None)."""
    if not url:
        return None, None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return url, None
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        return None, Path(url.removeprefix("sqlite://")).expanduser()
    from plurcast.store.base import redact

    where = from_env or f"{path}: database.url"
    raise ConfigError(
        f'{where} "{redact(url)}" names neither PostgreSQL nor SQLite',
        'use "postgresql://user@host/dbname" or "sqlite:///path/to/posts.db"',
    )


def _languages(defaults: _Reader) -> tuple[str, ...]:
    """`[defaults] language = "de"` (or a list of up to three), each a checked language tag."""
    value = defaults.get("language", (str, list))
    if value is None:
        return ()
    from plurcast import languages

    tags = [value] if isinstance(value, str) else value
    if not tags or not all(isinstance(t, str) for t in tags):
        defaults.fail("language", 'must be a language tag such as "en" or a list of them')
    try:
        return languages.checked(tags)
    except InvalidInput as exc:
        raise ConfigError(f"{defaults.path}: defaults.language: {exc.message}", exc.hint) from None


def _platform(top: _Reader, name: str) -> Platform:
    section = top.table_of(name)
    enabled = section.get("enabled", bool, True)
    return Platform(name, enabled, {DEFAULT_ACCOUNT: _account_settings(name, section)})


def _account_settings(platform: str, table: _Reader) -> dict[str, Any]:
    """The checks every account of a platform gets, the default one and named ones alike."""
    for key in registry.setting_names(platform):
        limit = table.get(key, int)
        if limit is not None and limit < 1:
            table.fail(key, "must be a positive number", f"write {_WRITE_AS[int]}")
    return table.data


def _slots(top: _Reader) -> dict[str, frozenset[tuple[int, int]]]:
    """`[slots] nostr = ["mon-fri 09:00"]`, `all = [...]`: checked here, so a bad slot is a
    config error on any command, not a surprise at the first `--schedule next`."""
    if "slots" not in top.data:
        return {}
    from plurcast import slots

    table = top.table_of("slots")
    rules: dict[str, frozenset[tuple[int, int]]] = {}
    for name, value in table.data.items():
        if name != slots.ALL and name not in registry.NAMES:
            table.fail(name, f"is not a platform ({', '.join(registry.NAMES)}) or all")
        specs = [value] if isinstance(value, str) else value
        if not isinstance(specs, list) or not all(isinstance(v, str) for v in specs):
            table.fail(name, f"must be a list of weekly times, {slots.EXAMPLE}")
        for spec in specs:
            try:
                slots.parse_spec(spec)
            except slots.SlotError as exc:
                raise ConfigError(
                    f'{top.path}: slots.{name}: "{spec}" is not a weekly time ({exc})',
                    f"write days and a 24-hour time, {slots.EXAMPLE}",
                ) from None
        rules[name] = slots.parse_specs(specs)
    return rules


def _scheduling(top: _Reader) -> Scheduling:
    if "scheduling" not in top.data:
        return Scheduling()
    s = top.table_of("scheduling")
    per_hour = registry.default_posts_per_hour()
    if "rate_limits" in s.data:
        limits = s.table_of("rate_limits")
        for platform_name in limits.data:
            if platform_name not in registry.NAMES:
                limits.fail(platform_name, f"is not a platform ({', '.join(registry.NAMES)})")
            platform_limits = limits.table_of(platform_name)
            if "posts_per_hour" in platform_limits.data:
                per_hour[platform_name] = platform_limits.whole("posts_per_hour", 0)
    defaults = Scheduling()
    # The original's inter_retry_delay (a pause between two posts' retries) is accepted and
    # checked, and has nothing to do: retries are spread by their jittered backoff, and
    # each account's rate window and the platforms' own holds keep bursts in check.
    s.number("inter_retry_delay", None)
    return Scheduling(
        poll_interval=s.number("poll_interval", defaults.poll_interval) or 0.1,
        max_retries=s.whole("max_retries", defaults.max_retries),
        retry_delay=s.number("retry_delay", defaults.retry_delay) or 0.0,
        max_concurrency=s.whole("max_concurrency", defaults.max_concurrency),
        shutdown_timeout=s.number("shutdown_timeout", defaults.shutdown_timeout) or 0.0,
        grace=s.number("grace", None),
        startup_delay=s.number("startup_delay", defaults.startup_delay) or 0.0,
        posts_per_hour=per_hour,
    )
