"""An attempt's outcome, from its decision to its log line.

`Record` decides what the outcome means for the delivery when it comes (sent; retried when;
given up, why); called inside a transaction it writes it, with the attempt, any hold the
platform asked for and, when the lane may be refilled, the claim of the platform's next due
delivery; `told` logs it once that transaction is committed. The engine runs a record in a
transaction of its own, or (a publish's) in the one of the deliveries finishing about the same
time (plurcast.store.grouped): either way nothing is logged, and no caller hears of an outcome,
before it is on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from plurcast.models import NOTE_PREFIX, Fate
from plurcast.outcomes import decide, error_text, log_fields, log_outcome
from plurcast.platforms.base import Outcome, OutcomeKind
from plurcast.store import rates, recording
from plurcast.store.claiming import Claimed
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.engine import Engine

log = logging.getLogger("plurcast.engine")  # the name these lines always had in the logs


class Delivered(Value):
    """What became of one claimed delivery in this process; `successor`, the delivery its
    platform's lane was handed to when `deliver` was asked to `refill` it."""

    claim: Claimed
    state: Fate
    outcome: Outcome | None
    due_at_ms: int | None = None
    successor: Claimed | None = None


class Record:
    """An attempt's outcome, decided when it came (`decide`: sent, retried when, given up);
    called in a transaction it writes it, unless this process lost the lease, with its attempt
    and any hold, and claims the lane's next delivery when `refill` says so; `told` logs it,
    once committed."""

    __slots__ = ("claim", "decision", "detail", "engine", "now", "outcome", "refill", "started")

    def __init__(
        self,
        engine: Engine,
        claim: Claimed,
        outcome: Outcome,
        started: int,
        notes: dict[str, str] | None,
        refill: Callable[[], bool] | None,
    ) -> None:
        self.engine, self.claim, self.outcome, self.started = engine, claim, outcome, started
        self.refill = refill
        self.now = now = engine.now_ms()
        self.decision = decide(
            outcome,
            attempt=claim.attempts + 1,
            now_ms=now,
            sched=engine.cfg.scheduling,
            no_retry=engine.no_retry,
            rng=lambda: engine.rng,
            rate_limited_in_a_row=lambda: recording.rate_limited_in_a_row(
                engine.conn, claim.delivery_id
            ),
        )
        self.detail = {
            **{NOTE_PREFIX + key: error_text(note) for key, note in (notes or {}).items()},
            **{key: error_text(value) for key, value in outcome.detail.items()},
        }

    def __call__(self) -> Delivered:
        engine, claim, outcome, now = self.engine, self.claim, self.outcome, self.now
        conn = engine.conn
        decision = self.decision
        state, kind, error, due = decision.state, decision.kind, decision.error, decision.due_at_ms
        count = decision.counts
        held = recording.record(
            conn,
            claim.delivery_id,
            engine.owner,
            state=state,
            now_ms=now,
            count_attempt=count,
            due_at_ms=due,
            remote_id=outcome.remote_id,
            remote_url=outcome.remote_url,
            remote_cid=outcome.remote_cid,
            error=error,
            error_kind=kind,
        )
        if held and state == "sent":
            recording.unblock_children(conn, claim.delivery_id, now)
        recording.log_attempt(
            conn,
            claim.delivery_id,
            started_ms=self.started,
            finished_ms=now,
            outcome=state,
            error=error,
            error_kind=kind,
            detail=self.detail,
            worker=engine.owner,
        )
        if outcome.kind == OutcomeKind.RATE_LIMITED and due is not None:
            rates.set_hold(conn, claim.platform, claim.account, due, error or "rate limited")
        if outcome.hold_for:
            until = now + int(outcome.hold_for * 1000)
            rates.set_hold(conn, claim.platform, claim.account, until, "quota used up")
        refill = self.refill
        successor = engine.successor(claim.platform) if refill is not None and refill() else None
        if not held:
            return Delivered(claim, "lost", outcome, successor=successor)
        return Delivered(claim, state, outcome, due, successor)

    def told(self, written: Delivered) -> Delivered:
        claim = self.claim
        if written.state == "lost":
            log.warning(
                "post %s to %s/%s: lease lost before recording %s",
                claim.post_id,
                claim.platform,
                claim.account,
                self.decision.state,
                extra=log_fields(claim),
            )
        else:
            decision = self.decision
            log_outcome(
                claim, decision.state, self.outcome, decision.error, decision.due_at_ms, self.now
            )
        return written
