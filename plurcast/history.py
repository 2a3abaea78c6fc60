"""plur-history: what went out, where, and what failed — the original's query, on deliveries.

A post is history once one of its deliveries was sent, gave up, or was at least tried; its
time is when it first went out (or failed). Each platform line is one (platform, account)
delivery: success, the platform's id, the error.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from plurcast.errors import InvalidInput
from plurcast.models import to_ms
from plurcast.platforms import registry
from plurcast.store import history as store
from plurcast.store.base import Database
from plurcast.value import Value

DEFAULT_LIMIT = 20
_BATCH = 500  # ids per IN (...) query
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HINT = 'use a Unix timestamp, YYYY-MM-DD, ISO 8601 ("2025-10-01T09:00:00Z") or a span ago ("7d")'


class PlatformResult(Value):
    platform: str
    account: str
    success: bool
    platform_post_id: str | None
    url: str | None
    error: str | None
    at_ms: int  # sent, or the last attempt


class Entry(Value):
    post_id: str
    content: str
    created_at_ms: int
    posted_at_ms: int  # when it first went out (or failed)
    platforms: list[PlatformResult]


def parse_date(text: str, tz: ZoneInfo, now: datetime, *, end: bool = False) -> int:
    """--since/--until as the original took them (Unix seconds, YYYY-MM-DD, ISO 8601), in the
    user's zone rather than UTC when no offset is given, or a span ago (`7d`, `12h`).

    With `end`, a bare date means the end of that day: `--until 2025-10-05` includes the 5th.
    """
    raw = text.strip()
    if re.fullmatch(r"-?\d{1,12}", raw):
        return int(raw) * 1000
    if _DATE.fullmatch(raw):
        try:
            day = datetime.fromisoformat(raw).replace(tzinfo=tz)
        except ValueError as exc:
            raise InvalidInput(f'invalid date "{text}": {exc}', _HINT) from None
        if end and day.date() == date.max:  # the day after it cannot be a datetime
            return to_ms(datetime.max.replace(tzinfo=tz)) + 1
        return to_ms(day + timedelta(days=1) if end else day)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        parsed = None
    if parsed is not None:
        return to_ms(parsed if parsed.tzinfo else parsed.replace(tzinfo=tz))
    from plurcast import when

    try:
        span = when.parse_duration(raw.removesuffix(" ago"))
    except InvalidInput:
        raise InvalidInput(f'invalid date "{text}"', _HINT) from None
    return to_ms(now - span)


def query(
    conn: Database,
    *,
    platform: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    search: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Entry]:
    """The newest `limit` posts that match; `search` is a case-insensitive substring."""
    needle = search.casefold() if search else None
    found: list[tuple[str, str, int, int]] = []
    for row in store.posts(conn, platform=platform, since_ms=since_ms, until_ms=until_ms):
        if len(found) >= limit:
            break
        if needle is None or needle in row[1].casefold():
            found.append(row)
    results: dict[str, list[PlatformResult]] = {post_id: [] for post_id, *_ in found}
    ids = list(results)
    for start in range(0, len(ids), _BATCH):
        for r in store.outcomes(conn, ids[start : start + _BATCH], platform):
            results[r[0]].append(PlatformResult(r[1], r[2], r[3] == "sent", r[4], r[5], r[6], r[7]))
    return [
        Entry(
            post_id,
            content,
            created,
            posted,
            sorted(results[post_id], key=lambda p: (registry.ORDER[p.platform], p.account)),
        )
        for post_id, content, created, posted in found
    ]
