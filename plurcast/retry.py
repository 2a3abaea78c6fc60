"""When to try again: exponential backoff from `retry_delay`, with jitter.

Retries are rows with a due time, not sleeping loops, so they survive restarts;
that is why this is arithmetic and not a retry library.
"""

from __future__ import annotations

import random

MAX_DELAY_SECONDS = 6 * 3600


def backoff_seconds(attempt: int, base: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1 = the first retry): base, 2·base, 4·base …

    ±20 % jitter keeps a burst of failures from retrying in lock-step.
    """
    delay = min(MAX_DELAY_SECONDS, base * 2 ** max(0, attempt - 1))
    return float(delay * rng.uniform(0.8, 1.2))
