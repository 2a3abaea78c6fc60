"""Hold SIGTERM and SIGHUP from the first line of plur-send until the daemon can act on them.

Python would otherwise let a SIGTERM that arrives while plur-send is still importing,
reading its config or opening the database kill it with -15 instead of exit 0 (systemd,
a supervisor or a script may stop a daemon that has only just started). `catch` runs
before any heavy import; the daemon replays what arrived with `take`, other commands
`release` it so they keep the default behaviour.

Only the C module `_signal` is imported here: `signal` imports `enum`, which costs more
than the rest of the interpreter's start-up (20 ms of a 30-ms window on a busy machine),
and a signal that comes before `catch` still kills. No `from __future__` import either.
"""

import _signal  # type: ignore[import-not-found]  # the C half of `signal`, no stubs

SIGHUP = _signal.SIGHUP
HELD = (_signal.SIGTERM, SIGHUP)

_pending: "list[int]" = []


def _hold(signum: int, _frame: object) -> None:
    _pending.append(signum)


def catch() -> None:
    for signum in HELD:
        _signal.signal(signum, _hold)


def take() -> "list[int]":
    """The signals held so far, oldest first, and forget them."""
    taken = list(_pending)
    del _pending[: len(taken)]  # one that comes in between is kept for the next take
    return taken


def release() -> None:
    """Restore the default handlers and deliver what was held, as if never caught."""
    for signum in HELD:
        if _signal.getsignal(signum) is _hold:
            _signal.signal(signum, _signal.SIG_DFL)
    for held in take():
        _signal.raise_signal(held)
