"""The settings a config file may hold, in one place, and the ones it holds that none reads.

A key nothing reads leaves its default in force without a word: `poll_intervall = 5` under
[scheduling] polled every 60 s. `unknown` names each such key (`scheduling.poll_intervall`),
and `warn_unknown` says so on stderr, with the nearest known key; the file is still used, as
the original tool used it (an error would stop every command of a file that worked). The
original's own tables and keys, which a file written for it holds ([credentials], [ssb],
`max_retries_per_iteration`), have no effect here and are not named.

The platform tables' keys are the registry's (`Platform.keys` and the maximums' settings); a
test reads every settings module for the keys it looks up, so that a key read is never named
as unknown.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from plurcast.platforms import registry

# The original tool's tables, read by nothing here: skipped whole.
ORIGINAL_TABLES = frozenset({"credentials", "ssb"})
TABLES: Mapping[str, frozenset[str]] = {
    "": frozenset({"timezone", "database", "defaults", "media", "scheduling", "slots", "accounts"}),
    "database": frozenset({"path", "url", "busy_timeout"}),
    "defaults": frozenset({"platforms", "require_alt", "language"}),
    "media": frozenset({"fit"}),
    "scheduling": frozenset(
        {
            "poll_interval",
            "max_retries",
            "retry_delay",
            "max_concurrency",
            "shutdown_timeout",
            "grace",
            "startup_delay",
            "inter_retry_delay",
            "max_retries_per_iteration",  # the original's; retries here are spread by backoff
            "rate_limits",
        }
    ),
}
RATE_LIMIT_KEYS = frozenset({"posts_per_hour"})


def platform_keys(platform: str) -> frozenset[str]:
    """What an account's table of `platform` may hold ([nostr], [accounts.nostr.NAME])."""
    return frozenset({*registry.get(platform).keys, *registry.setting_names(platform)})


def unknown(data: Mapping[str, Any]) -> list[str]:
    """The dotted names of the keys in `data` (a parsed config file) that no setting reads, in
    the file's order. Tables and keys whose names or values config.load checks (platform names,
    account names, [slots]) are left to it."""
    return list(_unknown(data))


def _unknown(data: Mapping[str, Any]) -> Iterator[str]:
    for key, value in data.items():
        if key in ORIGINAL_TABLES:
            continue
        if key in registry.NAMES:
            yield from _outside(value, platform_keys(key) | {"enabled"}, key)
        elif key not in TABLES[""]:
            yield key
        elif key == "accounts" and isinstance(value, dict):
            for platform, named in value.items():
                if platform in registry.NAMES and isinstance(named, dict):
                    for name, table in named.items():
                        prefix = f"accounts.{platform}.{name}"
                        yield from _outside(table, platform_keys(platform), prefix)
        elif key in TABLES:
            yield from _outside(value, TABLES[key], key)
            limits = value.get("rate_limits") if isinstance(value, dict) else None
            if key == "scheduling" and isinstance(limits, dict):
                for platform, table in limits.items():
                    prefix = f"scheduling.rate_limits.{platform}"
                    yield from _outside(table, RATE_LIMIT_KEYS, prefix)


def _outside(table: Any, known: frozenset[str], prefix: str) -> Iterator[str]:
    if isinstance(table, dict):
        yield from (f"{prefix}.{key}" for key in table if key not in known)


def warn_unknown(path: Path, data: Mapping[str, Any]) -> None:
    """A warning for each key of the file that no setting reads, with the nearest known one."""
    names = unknown(data)
    if not names:
        return
    import difflib
    import logging

    log = logging.getLogger("plurcast.config")
    for name in names:
        table, _, key = name.rpartition(".")
        near = difflib.get_close_matches(key, sorted(_known_in(table)), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        log.warning("%s: %s is not a setting Plurcast reads; it has no effect%s", path, name, hint)


def _known_in(table: str) -> frozenset[str]:
    parts = table.split(".")
    if parts[0] in registry.NAMES:
        return platform_keys(parts[0]) | {"enabled"}
    if parts[0] == "accounts" and len(parts) == 3:
        return platform_keys(parts[1])
    if parts[:2] == ["scheduling", "rate_limits"]:
        return RATE_LIMIT_KEYS
    if not table:
        return TABLES[""] | set(registry.NAMES)
    return TABLES.get(table, frozenset())
