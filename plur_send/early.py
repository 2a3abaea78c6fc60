"""Hold SIGTERM and SIGHUP from the first line of plur-send until the daemon can act on them.

Python would otherwise let a SIGTERM that arrives while plur-send is still importing,
reading its config or opening the database kill it with -15 instead of exit 0 (systemd,
a supervisor or a script may stop a daemon that has only just started). `catch` runs
before any heavy import; the daemon replays what arrived with `take`, other commands
`release` it so they keep the default behaviour.
"""

from __future__ import annotations

import signal
from types import FrameType

HELD = (signal.SIGTERM, signal.SIGHUP)

_pending: list[int] = []


def _hold(signum: int, _frame: FrameType | None) -> None:
    _pending.append(signum)


def catch() -> None:
    for signum in HELD:
        signal.signal(signum, _hold)


def take() -> list[int]:
    """The signals held so far, oldest first, and forget them."""
    taken = list(_pending)
    _pending.clear()
    return taken


def release() -> None:
    """Restore the default handlers and deliver what was held, as if never caught."""
    for signum in HELD:
        if signal.getsignal(signum) is _hold:
            signal.signal(signum, signal.SIG_DFL)
    for held in take():
        signal.raise_signal(held)
