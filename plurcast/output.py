"""One writer for every command's data: text, json or jsonl.

Text is a rich table only for a person (stdout is a TTY and NO_COLOR is unset);
piped, it is one record per line, tab-separated, so `cut`/`awk` work. rich is
imported only when a table is drawn: it costs ~30 ms that scripts should not pay.

Text a post, a platform or a user brought (content, error texts, ids typed) is shown
through `printable` in every human-readable output — table, plain lines, `Error:` lines,
logs — and handed to rich as plain `Text`, never as markup. JSON stays exact.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from plurcast.bulk import no_cycle_collection
from plurcast.value import Value

Format = Literal["text", "json", "jsonl"]
FORMATS: tuple[Format, ...] = ("text", "json", "jsonl")


def fancy() -> bool:
    """Whether stdout is a person's terminal that wants tables and colour."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


# What would act on a terminal instead of showing (ESC, BEL, backspace, CR … and the C1
# controls), reorder what follows (bidi overrides, isolates and marks), break a line
# (NEL, U+2028, U+2029) or cannot be encoded at all (lone surrogates). Tabs stay. Each of
# these is one str.isprintable() refuses (control, format, line or paragraph separator,
# surrogate), so text it accepts has none and skips the pattern — compiled by re's cache
# at first use, not on every command's start-up (~4.3 M instructions; issue #16).
UNSAFE = "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    if 0xDC80 <= code <= 0xDCFF:  # a byte of argv or a file name that is not UTF-8, as Python
        code -= 0xDC00  # decodes it (surrogateescape): shown as the byte it was, \xff
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every character that could steer a terminal shown as an escape
    (``\\x1b``, ``\\u202e``); the one rule for all human-readable output."""
    if text.isprintable():
        return text
    return re.sub(UNSAFE, _escape, text)


def emit_lines(lines: Iterable[str], *, err: bool = False) -> None:
    """Human-readable lines on stdout (or stderr), each made printable."""
    (sys.stderr if err else sys.stdout).write("".join(printable(line) + "\n" for line in lines))


def rich_text(text: str) -> Any:
    """A rich cell from untrusted text: printable, never parsed as markup or :emoji:."""
    from rich.text import Text

    return Text(printable(text))


def emit_json(value: Any, fmt: Format) -> None:
    """An object as indented JSON; a list as an array with one compact object per line.

    jsonl writes each object (or the single object) on its own line. Non-ASCII text is
    written as it is (UTF-8), never as \\u escapes. orjson encodes (imported here, so that
    commands printing text don't load it): the standard library's encoder took 45 ms of a
    270-ms `plur-queue list -f json` over 10,000 posts, orjson takes 5 ms.
    """
    if isinstance(value, list):
        _emit_json_list(value, fmt)
        return
    import orjson

    option = 0 if fmt == "jsonl" else orjson.OPT_INDENT_2
    _utf8_writer()(orjson.dumps(value, option=option) + b"\n")


def write_fully(fd: int, data: bytes) -> None:
    """All of `data` to the file descriptor, or OSError. Python's buffered file takes one big
    write that the disk fills part-way (a short write, then ENOSPC) as a success: `plur-export
    > backup.jsonl` wrote 64 KB of 300 and exited 0."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_text_fully(text: str) -> None:
    """All of `text` on stdout (see write_fully), after what is already written there."""
    out = sys.stdout
    out.flush()
    try:
        fd = out.fileno()
    except OSError:  # io.UnsupportedOperation: a stream without a descriptor (a test's)
        out.write(text)
        return
    write_fully(fd, text.encode("utf-8"))


def discard_stdout() -> None:
    """stdout's reader went away (`| head -1`): what is still to be written goes nowhere,
    so that neither a later write nor the flush at exit fails on the closed pipe again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def emit_nothing_done(said: str, fmt: Format) -> None:
    """A command that found nothing to act on (`cancel --all` on an empty queue): `said` on
    stderr, and for json the empty array a script parses, as a listing prints (jsonl and
    text print no line)."""
    sys.stderr.write(said + "\n")
    if fmt == "json":
        _emit_json_list((), fmt)


def _emit_json_list(items: Iterable[Any], fmt: Format) -> None:
    """Each item is encoded and written as it comes, as UTF-8 bytes, as `sqlite3 -json`
    writes rows: 10,000 encoded posts kept until the end took a page of fresh memory
    each (~14,000 page faults, 60 MB more peak memory), and decoding them to text to have
    it encoded again cost as many instructions as encoding them."""
    import orjson

    dumps = orjson.dumps
    write = _utf8_writer()
    if fmt == "jsonl":
        for item in items:
            write(dumps(item) + b"\n")
        return
    separator = b"[\n"
    for item in items:
        write(separator)
        write(dumps(item))
        separator = b",\n"
    write(b"[]\n" if separator == b"[\n" else b"\n]\n")


def _utf8_writer() -> Callable[[bytes], object]:
    """Writes UTF-8 to stdout's byte stream, after any text already written to stdout."""
    out = sys.stdout
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stream (io.StringIO in place of stdout)
        return lambda data: out.write(data.decode())
    write: Callable[[bytes], object] = buffer.write
    return write


class Column(Value):
    header: str
    value: Callable[[Any], str]
    style: str | None = None
    max_width: int | None = None


def emit_rows(
    items: Iterable[Any],
    fmt: Format,
    *,
    to_json: Callable[[Any], dict[str, Any]],
    plain: Callable[[Any], Sequence[str]],
    columns: Sequence[Column],
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """Render records: `to_json` for json/jsonl, `plain` fields when piped, `columns` on a TTY.

    Each record is written as it comes from `items` (all of them first only for a table),
    so a stream of records is never held whole. An empty result prints nothing (text,
    jsonl) or `[]` (json), so scripts see no noise; on a TTY `empty` is said on stderr
    instead.
    """
    if fmt != "text":
        with no_cycle_collection():
            _emit_json_list(map(to_json, items), fmt)
        return
    if not fancy():
        out = sys.stdout
        for item in items:
            out.write("\t".join(one_line(field) for field in plain(item)) + "\n")
        return
    items = list(items)
    if not items:
        if empty:
            sys.stderr.write(empty + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for col in columns:
        table.add_column(col.header, style=col.style, max_width=col.max_width, overflow="fold")
    for item in items:
        table.add_row(*(rich_text(one_line(col.value(item))) for col in columns))
    Console().print(table)


def one_line(field: str) -> str:
    """A field of a tab-separated line: no tab or line break of its own, printable."""
    return printable(field.replace("\t", " ").replace("\r", " ").replace("\n", " "))


def first_line(text: str, width: int = 60) -> str:
    """The start of a post for listings: whole characters, never a broken emoji sequence."""
    line, _, rest = text.partition("\n")
    if len(line) <= width and not rest:
        return line
    import regex

    clusters = regex.findall(r"\X", line)
    if len(clusters) <= (width - 1 if rest else width):
        return line + ("…" if rest else "")
    return "".join(clusters[: width - 1]) + "…"
