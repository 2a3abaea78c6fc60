"""What Nostr relays answer to an EVENT, and what the answers mean for the delivery.

NIP-01's `OK` message: `true`, or `false` with a machine-readable prefix. One relay's
answer is accepted, permanent, transient or rate-limited; the answers of all the
account's relays together make the attempt's outcome (`min_relays` must accept).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plurcast.platforms.base import Outcome, OutcomeKind, one_line

if TYPE_CHECKING:
    import asyncio

# What one relay's answer means (classify_relay_answer).
ACCEPTED = "accepted"
PERMANENT = "permanent"
TRANSIENT = "transient"
RATE_LIMITED = "rate_limited"

# NIP-01 machine-readable prefixes of an `OK false` answer that retrying cannot change.
PERMANENT_PREFIXES = frozenset({"invalid", "blocked", "restricted", "pow"})


def classify_relay_answer(reason: str | None) -> str:
    """What one relay's answer to an EVENT means: accepted, permanent, transient, rate_limited.

    None is an `OK true`. A `duplicate:` refusal means the relay already has this
    very event, so it counts as accepted. `invalid:`, `blocked:`, `restricted:` and
    `pow:` cannot change by retrying; `rate-limited:` can, later; everything else
    (nostr-sdk's `timeout`, `relay not connected`, `error:`, unknown) is transient.
    """
    if reason is None:
        return ACCEPTED
    prefix, colon, _ = reason.strip().lower().partition(":")
    if not colon:
        return TRANSIENT
    prefix = prefix.strip()
    if prefix == "duplicate":
        return ACCEPTED
    if prefix in PERMANENT_PREFIXES:
        return PERMANENT
    if prefix == "rate-limited":
        return RATE_LIMITED
    return TRANSIENT


def outcome_from_answers(
    answers: Mapping[str, str | None], min_relays: int, note_id: str
) -> Outcome:
    """The delivery's outcome from each relay's answer (None = accepted), in relay order.

    SENT when at least `min_relays` accepted. PERMANENT when even a retry that every
    transient relay then accepted could not reach `min_relays` (the relays that
    accepted will answer a re-send as a duplicate, the permanent ones will refuse
    again). Otherwise TRANSIENT, or RATE_LIMITED when every refusal was `rate-limited:`.
    """
    kinds = {url: classify_relay_answer(reason) for url, reason in answers.items()}
    detail = {url: "ok" if reason is None else one_line(reason) for url, reason in answers.items()}
    accepted = sum(1 for kind in kinds.values() if kind == ACCEPTED)
    if accepted >= min_relays:
        return Outcome(OutcomeKind.SENT, remote_id=note_id, detail=detail)
    failed = [url for url, kind in kinds.items() if kind != ACCEPTED]
    summary = "; ".join(f"{url}: {detail[url]}" for url in failed)
    if accepted:
        summary = f"accepted by {accepted} of the {min_relays} relays required; {summary}"
    retryable = sum(1 for url in failed if kinds[url] in (TRANSIENT, RATE_LIMITED))
    if accepted + retryable < min_relays:
        return Outcome(OutcomeKind.PERMANENT, error=summary, detail=detail)
    if failed and all(kinds[url] == RATE_LIMITED for url in failed):
        return Outcome(OutcomeKind.RATE_LIMITED, error=summary, detail=detail)
    return Outcome(OutcomeKind.TRANSIENT, error=summary, detail=detail)


def answer(task: asyncio.Future[Any]) -> str | None:
    """One relay's answer from its finished send (a SendEventOutput for that relay alone)."""
    if task.cancelled():
        return "error: send cancelled"
    try:
        output = task.result()
    except Exception as exc:
        return send_error(exc)
    return output_answer(output)


def send_error(exc: Exception) -> str:
    """A relay's answer when its send raised."""
    return f"error: {type(exc).__name__}: {one_line(str(exc))}"


def output_answer(output: Any) -> str | None:
    """One relay's answer in the SendEventOutput of a send to that relay alone."""
    if output.success:
        return None
    for reason in output.failed.values():
        return str(reason)
    return "no answer from the relay"


def accepted(answers: Mapping[str, str | None]) -> int:
    return sum(1 for reason in answers.values() if classify_relay_answer(reason) == ACCEPTED)
