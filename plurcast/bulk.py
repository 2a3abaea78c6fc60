"""Building many objects at once: the cycle collector paused while it happens."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from plurcast import deferred


@contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause the cycle collector while building many objects that form no cycles.

    A 10,000-post list makes ~60,000 containers; the collector would walk them again and
    again (16 ms of a 300 ms `plur-queue list -f json`) and find nothing to free.
    Reference counting still frees everything; the collector resumes as it was.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def console(module: str, *, run_paused: bool = True, frozen_exit: bool = False) -> None:
    """A console script: `module` imported, and its `main` run, with the collector off.

    A command's start-up imports make tens of thousands of objects that live until it
    exits, and the collector walks them again and again finding nothing to free. That is
    14 M of plur-post --schedule's 319 M instructions, and 29 M more for importing
    nostr-sdk to publish. What the imports made is then frozen (`gc.freeze`): the
    collections at exit, which run even with the collector off, walk only what the run
    made (~19 M more of plur-post --schedule), and so does every collection of a daemon.
    A command's run is short and makes few cycles (bulk work pauses the collector anyway).
    plur-send, which may run for months, has it off for its imports only
    (`run_paused=False`).

    With `frozen_exit`, what the run made is frozen too when `main` ends: the exit's
    collections then walk nothing. An immediate plur-post imports nostr-sdk during its run
    (~32,000 objects, 30 M instructions for those collections to walk, freeing nothing).
    Only for a command that closes what it opened (`clikit.closed_at_end`): a frozen object
    in a reference cycle is never collected, and a SQLite connection is in one (its
    statement cache) — left open, its WAL would not be checkpointed into the file at exit.

    First of all, the modules that click imports and a command's usual path never uses are
    deferred to their first use (plurcast.deferred).
    """
    deferred.defer()
    gc.disable()
    main = importlib.import_module(module).main
    gc.freeze()
    if not run_paused:
        gc.enable()
    try:
        main()
    finally:
        if frozen_exit:
            gc.freeze()
