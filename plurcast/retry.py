"""When to try again: exponential backoff from `retry_delay`, with jitter.

Retries are rows with a due time, not sleeping loops, so they survive restarts;
that is why this is arithmetic and not a retry library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

MAX_DELAY_SECONDS = 6 * 3600
# Rate-limit answers in a row before a delivery gives up: with the default retry_delay the
# waits add up to more than a day; a server that says "slow down" forever is not waited on forever.
MAX_RATE_LIMITED_WAITS = 10


def backoff_seconds(attempt: int, base: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1 = the first retry): base, 2·base, 4·base …

    ±20 % jitter keeps a burst of failures from retrying in lock-step.
    """
    delay = min(MAX_DELAY_SECONDS, base * 2 ** max(0, attempt - 1))
    return float(delay * rng.uniform(0.8, 1.2))


def rate_limited_wait(
    in_a_row: int, retry_after: float | None, base: float, rng: random.Random
) -> float | None:
    """The wait after a rate-limit answer that follows `in_a_row` others; None: give up.

    Such an answer uses up no retry, but the waits grow like backoff (G3): the first
    waits as long as the server asked (else `base`), each later one at least twice the
    one before, and after MAX_RATE_LIMITED_WAITS in a row the delivery gives up.
    """
    if in_a_row >= MAX_RATE_LIMITED_WAITS:
        return None
    if retry_after is not None and in_a_row == 0:
        return retry_after
    own = backoff_seconds(in_a_row if retry_after is not None else in_a_row + 1, base, rng)
    return max(retry_after or 0.0, own)
