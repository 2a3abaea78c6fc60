"""What every plur-queue command starts with, and the text cells they share."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from plurcast import clikit, queue
from plurcast import config as config_module
from plurcast.config import Config
from plurcast.models import Post, from_ms
from plurcast.output import Column, first_line
from plurcast.store.base import Database
from plurcast.timefmt import format_local, format_relative
from plurcast.value import Value
from plurcast.views import iso, part_label


class Session(Value):
    cfg: Config
    conn: Database
    tz: ZoneInfo
    now: datetime


def open_session(tz: str | None = None) -> Session:
    cfg = config_module.load()
    zone = cfg.timezone if tz is None else config_module.zone(tz)
    # Every plur-queue command reads, or changes posts that must be there already: a
    # database that does not exist yet is an empty queue, and stays unmade.
    conn = queue.open_db(cfg, create=False)
    return Session(cfg, conn, zone, clikit.now(conn))


def when_cell(post: Post, s: Session) -> str:
    if post.scheduled_at_ms is None:
        return "-"
    at = from_ms(post.scheduled_at_ms)
    return f"{format_local(at, s.tz, s.now)} ({format_relative(at - s.now)})"


def plain_time(post: Post, s: Session) -> str:
    return "-" if post.scheduled_at_ms is None else iso(post.scheduled_at_ms, s.tz)


def post_columns(s: Session, *, status: bool) -> list[Column]:
    columns = [
        Column("ID", lambda p: p.id[:8], style="cyan", max_width=8),
        Column("When", lambda p: when_cell(p, s)),
        Column("Platforms", lambda p: ",".join(p.platforms)),
    ]
    if status:
        columns.append(Column("Status", lambda p: p.status.value))
    columns.append(Column("Content", lambda p: part_label(p) + first_line(p.content)))
    return columns
