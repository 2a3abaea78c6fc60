"""What an attempt's outcome means for its delivery, and how it is told.

Sent; or tried again when (backoff, a rate limit's wait) without using up an attempt
or with; or given up, with why. The error text is stored, printed and logged the same
way, and each outcome is one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from plurcast.errors import ConfigError, PlurcastError, RuntimeFailure
from plurcast.platforms.base import Outcome, OutcomeKind
from plurcast.retry import backoff_seconds, rate_limited_wait
from plurcast.secrets import redact
from plurcast.value import Value

if TYPE_CHECKING:
    import random

    from plurcast.config import Scheduling
    from plurcast.models import ErrorKind, Recorded
    from plurcast.store.claiming import Claimed

log = logging.getLogger("plurcast.engine")  # the name these lines always had in the logs

# A relay's or server's error text is kept to this many characters (one answered 200 KB).
MAX_ERROR_CHARS = 1000


class Decision(Value):
    """What becomes of the delivery after one attempt."""

    state: Recorded
    kind: ErrorKind | None
    error: str | None
    due_at_ms: int | None  # when a retry is due
    counts: bool  # whether the attempt uses up one of max_retries


def decide(
    outcome: Outcome,
    *,
    attempt: int,
    now_ms: int,
    sched: Scheduling,
    no_retry: bool,
    rng: Callable[[], random.Random],
    rate_limited_in_a_row: Callable[[], int],
) -> Decision:
    """Attempt number `attempt` ended in `outcome`: sent, retry (when) or dead (why).

    Only failures are retried (G3): a transient one after backoff until max_retries is
    used up; a rate-limit answer after the wait it asked for, without using up an
    attempt, until too many come in a row; a permanent one never.
    """
    error = None if outcome.error is None else error_text(outcome.error)
    if outcome.kind == OutcomeKind.SENT:
        return Decision("sent", None, None, None, True)
    if outcome.kind == OutcomeKind.PERMANENT:
        return Decision("dead", "auth" if outcome.auth else "permanent", error, None, True)
    if outcome.kind == OutcomeKind.RATE_LIMITED and not no_retry:
        in_a_row = rate_limited_in_a_row()
        wait = rate_limited_wait(in_a_row, outcome.retry_after, sched.retry_delay, rng())
        if wait is None:
            error = f"gave up after {in_a_row + 1} rate-limit answers in a row: {error}"
            return Decision("dead", "rate_limited", error, None, True)
        return Decision("retry", "rate_limited", error, now_ms + int(wait * 1000), False)
    if no_retry or attempt > sched.max_retries:
        error = f"gave up after {attempt} attempt{'s' if attempt != 1 else ''}: {error}"
        return Decision("dead", "transient", error, None, True)
    wait = outcome.retry_after or backoff_seconds(attempt, sched.retry_delay, rng())
    return Decision("retry", "transient", error, now_ms + int(wait * 1000), True)


def error_text(text: str) -> str:
    """What a platform said, as it is stored, printed and logged: without the account's
    secrets (a server may echo the token it got) and at most MAX_ERROR_CHARS long."""
    text = redact(text)
    if len(text) > MAX_ERROR_CHARS:
        text = f"{text[:MAX_ERROR_CHARS]}… ({len(text) - MAX_ERROR_CHARS:,} more characters)"
    return text


def failure(exc: Exception, claim: Claimed) -> Outcome:
    """What a failure before any byte went out means for the delivery.

    Config and input errors cannot mend themselves (dead, with the reason; config
    ones are auth errors, plur-post exits 2); a RuntimeFailure is passing (retry);
    anything else is a bug in an adapter, logged with its traceback and retried
    rather than allowed to take the daemon down.
    """
    if isinstance(exc, RuntimeFailure):
        return Outcome(OutcomeKind.TRANSIENT, error=str(exc))
    if isinstance(exc, PlurcastError):
        return Outcome(OutcomeKind.PERMANENT, error=str(exc), auth=isinstance(exc, ConfigError))
    log.exception("preparing post %s for %s failed unexpectedly", claim.post_id, claim.platform)
    return Outcome(OutcomeKind.TRANSIENT, error=f"{type(exc).__name__}: {exc}")


def log_fields(claim: Claimed) -> dict[str, str]:
    """Structured fields for logs (journald/json): which post, where, as whom."""
    return {"post_id": claim.post_id, "platform": claim.platform, "account": claim.account}


def log_outcome(
    claim: Claimed, state: Recorded, outcome: Outcome, error: str | None, due: int | None, now: int
) -> None:
    """The one log line of a recorded outcome."""
    fields = {**log_fields(claim), "delivery_state": state}
    if state == "sent":
        lateness = (now - claim.due_at_ms) / 1000 if claim.due_at_ms else 0.0
        log.info(
            "sent post %s to %s/%s: %s (%.3f s after its time)",
            claim.post_id,
            claim.platform,
            claim.account,
            outcome.remote_id,
            lateness,
            extra=fields,
        )
    elif state == "retry":
        log.warning(
            "post %s to %s/%s failed (%s); retrying in %.0f s",
            claim.post_id,
            claim.platform,
            claim.account,
            error,
            ((due or now) - now) / 1000,
            extra=fields,
        )
    else:
        log.error(
            "post %s to %s/%s gave up: %s",
            claim.post_id,
            claim.platform,
            claim.account,
            error,
            extra=fields,
        )
