"""Posts and deliveries as the rest of the code sees them, and how a post's status follows.

A post has no stored status: it is derived from its deliveries (one per platform
and account), so it can never disagree with what was actually sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from plurcast.platforms import registry
from plurcast.value import Value


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    CANCELLED = "cancelled"


class PostStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    POSTED = "posted"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    BLOCKED = "blocked"  # a thread part or reply whose parent gave up or was cancelled


# Waiting to be claimed: due at their time. Unsent: waiting, or on the wire (maybe out).
WAITING = (DeliveryState.PENDING, DeliveryState.RETRY)
UNSENT = (*WAITING, DeliveryState.SENDING)
# A delivery that may still go out: unsent, or given up (`failed retry` sends it again).
MAY_STILL_GO = (*UNSENT, DeliveryState.DEAD)
# What the engine makes of an attempt (stored as the delivery's state), and what became of
# a claimed delivery in this process: that, or cancelled (or taken over) before a byte went
# out, or lost (another process took its lease before the outcome was written).
Recorded = Literal["sent", "retry", "dead"]
Fate = Literal["sent", "retry", "dead", "cancelled", "lost"]
# Why a delivery is to be retried or gave up (its error_kind).
ErrorKind = Literal["auth", "permanent", "transient", "rate_limited", "expired"]
EXPIRED_KIND: ErrorKind = "expired"


class Attempt(Value):
    number: int
    started_at_ms: int
    finished_at_ms: int | None
    outcome: str
    error: str | None
    error_kind: str | None
    detail: str | None  # JSON: per-relay answers …, and what preparing noted (NOTE_PREFIX)

    @property
    def notes(self) -> dict[str, str]:
        """What preparing the delivery noted for people, e.g. {"card": "no card: …"}."""
        if not self.detail or NOTE_PREFIX not in self.detail:
            return {}
        import json

        found = json.loads(self.detail)
        if not isinstance(found, dict):
            return {}
        return {
            k.removeprefix(NOTE_PREFIX): str(v)
            for k, v in found.items()
            if k.startswith(NOTE_PREFIX)
        }


# An attempt's detail keys that hold a note from preparing it (plurcast.platforms.base.Work).
NOTE_PREFIX = "note:"


class WaitingOn(Value):
    """Why a blocked delivery waits: the first delivery up its chain not yet sent (G6)."""

    post_id: str | None  # None: that post was deleted
    thread_part: int | None
    platform: str
    state: str  # a delivery state, or "deleted"
    error: str | None

    @property
    def stuck(self) -> bool:
        """It will not be sent unless someone acts (failed retry): so neither will we."""
        return self.state in (DeliveryState.DEAD, DeliveryState.CANCELLED, "deleted")


class _Record:
    """What `@dataclass(slots=True)` gave Delivery and Post — ==, repr, no hash — written
    once by hand: the decorator writes and compiles each class's methods and makes the class
    a second time for its slots, ~6 M instructions a class on every command's start-up
    (issue #16). Each subclass lists its fields in `__slots__`, in its __init__'s order."""

    __slots__: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__ if name[0] != "_")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Record)
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in self.__slots__ if name[0] != "_")
        return f"{type(self).__name__}({', '.join(shown)})"


class Delivery(_Record):
    __slots__ = (  # noqa: RUF023 - in __init__'s order, which repr shows
        "id",
        "platform",
        "account",
        "state",
        "due_at_ms",
        "attempts",
        "remote_id",
        "remote_url",
        "sent_at_ms",
        "last_error",
        "error_kind",
        "prepared",
        "has_payload",
        "history",
        "parent_id",
        "blocked",
        "content",
        "waiting_on",
    )

    def __init__(
        self,
        id: int,
        platform: str,
        account: str,
        state: DeliveryState,
        due_at_ms: int | None,
        attempts: int,
        remote_id: str | None,
        remote_url: str | None,
        sent_at_ms: int | None,
        last_error: str | None,
        error_kind: str | None,
        prepared: bool = False,  # a payload exists or an attempt was made: the text is fixed
        has_payload: bool = False,  # a payload was stored: it may already be out
        history: list[Attempt] | None = None,  # None: none yet ([])
        parent_id: int | None = None,  # the delivery it answers (the previous part there)
        blocked: bool = False,  # its parent is not sent yet: it cannot be claimed (G6)
        content: str | None = None,  # its own text, when not the post's
        waiting_on: WaitingOn | None = None,
    ) -> None:
        self.id = id
        self.platform = platform
        self.account = account
        self.state = state
        self.due_at_ms = due_at_ms
        self.attempts = attempts
        self.remote_id = remote_id
        self.remote_url = remote_url
        self.sent_at_ms = sent_at_ms
        self.last_error = last_error
        self.error_kind = error_kind
        self.prepared = prepared
        self.has_payload = has_payload
        self.history: list[Attempt] = [] if history is None else history
        self.parent_id = parent_id
        self.blocked = blocked
        self.content = content
        self.waiting_on = waiting_on


class Post(_Record):
    __slots__ = (  # noqa: RUF023 - in __init__'s order, which repr shows
        "id",
        "content",
        "created_at_ms",
        "scheduled_at_ms",
        "timezone",
        "schedule_id",
        "occurrence_at_ms",
        "metadata",
        "deliveries",
        "thread_id",
        "thread_part",
        "thread_parts",
        "previous_part",
        "_status",
    )

    def __init__(
        self,
        id: str,
        content: str,
        created_at_ms: int,
        scheduled_at_ms: int | None,
        timezone: str,
        schedule_id: str | None,
        occurrence_at_ms: int | None,
        metadata: dict[str, Any],
        deliveries: list[Delivery] | None = None,  # None: none yet ([])
        thread_id: str | None = None,  # the thread it is a part of (its first part's id)
        thread_part: int | None = None,  # 1-based
        thread_parts: int | None = None,
        previous_part: str | None = None,  # the id of the part before it in its thread
    ) -> None:
        self.id = id
        self.content = content
        self.created_at_ms = created_at_ms
        self.scheduled_at_ms = scheduled_at_ms
        self.timezone = timezone
        self.schedule_id = schedule_id
        self.occurrence_at_ms = occurrence_at_ms
        self.metadata = metadata
        self.deliveries: list[Delivery] = [] if deliveries is None else deliveries
        self.thread_id = thread_id
        self.thread_part = thread_part
        self.thread_parts = thread_parts
        self.previous_part = previous_part
        self._status: PostStatus | None = None

    @property
    def status(self) -> PostStatus:
        """Derived once: a Post is a snapshot of what was read, not a live view."""
        if self._status is None:
            self._status = derive_status(self.deliveries, self.scheduled_at_ms)
        return self._status

    @property
    def platforms(self) -> list[str]:
        return sorted({d.platform for d in self.deliveries}, key=registry.ORDER.__getitem__)

    @property
    def reply_to(self) -> str | None:
        """What it answers: the part before it, else what --reply-to named."""
        if self.previous_part is not None:
            return self.previous_part
        named = self.metadata.get("reply_to")
        return named if isinstance(named, str) else None

    @property
    def account(self) -> str | None:
        accounts = {d.account for d in self.deliveries}
        return accounts.pop() if len(accounts) == 1 else None


class Schedule(Value):
    """A recurring post: its text and targets, its rule, and where it stands."""

    id: str
    content: str
    targets: list[tuple[str, str]]
    metadata: dict[str, Any]
    cron: str | None
    every_seconds: int | None
    timezone: str
    anchor_ms: int
    until_ms: int | None
    max_count: int | None
    posted: int
    next_run_at_ms: int | None
    misfire: str
    grace_seconds: int
    state: str  # active | paused | finished | cancelled
    created_at_ms: int
    last_run_at_ms: int | None

    @property
    def platforms(self) -> list[str]:
        return sorted({p for p, _ in self.targets}, key=registry.ORDER.__getitem__)


def derive_status(deliveries: list[Delivery], scheduled_at_ms: int | None) -> PostStatus:
    """The one rule for a post's status; precedence runs from in-flight to final."""
    waiting = stuck = 0  # one pass: a listing derives thousands
    for d in deliveries:
        if d.state is DeliveryState.SENDING:
            return PostStatus.SENDING
        if d.state in WAITING:
            waiting += 1
            stuck += d.waiting_on is not None and d.waiting_on.stuck
    if waiting and stuck == waiting:
        return PostStatus.BLOCKED
    if waiting:
        return PostStatus.DRAFT if scheduled_at_ms is None else PostStatus.SCHEDULED
    live = [d for d in deliveries if d.state != DeliveryState.CANCELLED]
    if not live:
        return PostStatus.CANCELLED
    dead = [d for d in live if d.state == DeliveryState.DEAD]
    if not dead:
        return PostStatus.POSTED
    if len(dead) < len(live):
        return PostStatus.PARTIAL
    if all(d.error_kind == EXPIRED_KIND for d in dead):
        return PostStatus.EXPIRED
    return PostStatus.FAILED


# Stored times are shown clamped to what datetime holds, a day inside its range so that any
# zone's offset fits too: a row from an older version or a hand edit never breaks a listing.
MIN_MS = -62_135_510_400_000  # 0001-01-02 00:00 UTC
MAX_MS = 253_402_128_000_000  # 9999-12-30 00:00 UTC


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(min(max(ms, MIN_MS), MAX_MS) / 1000, UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
