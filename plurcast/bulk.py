"""Building many objects at once: the cycle collector paused while it happens."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager


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


def console(module: str, *, run_paused: bool = True) -> None:
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
    """
    gc.disable()
    main = importlib.import_module(module).main
    gc.freeze()
    if not run_paused:
        gc.enable()
    main()
