"""One writer for every command's data: text, json or jsonl.

Text is a rich table only for a person (stdout is a TTY and NO_COLOR is unset);
piped, it is one record per line, tab-separated, so `cut`/`awk` work. rich is
imported only when a table is drawn: it costs ~30 ms that scripts should not pay.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from plurcast.bulk import no_cycle_collection

Format = Literal["text", "json", "jsonl"]
FORMATS: tuple[Format, ...] = ("text", "json", "jsonl")


def fancy() -> bool:
    """Whether stdout is a person's terminal that wants tables and colour."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def emit_json(value: Any, fmt: Format) -> None:
    """An object as indented JSON; a list as an array with one compact object per line.

    jsonl writes each object (or the single object) on its own line. Non-ASCII text is
    written as it is (UTF-8), never as \\u escapes. orjson encodes: the standard library's
    encoder took 45 ms of a 270-ms `plur-queue list -f json` over 10,000 posts, orjson
    takes 5 ms (imported here, so that commands printing text don't load it).
    """
    import orjson

    write = sys.stdout.write
    if isinstance(value, list):
        lines = [orjson.dumps(item).decode() for item in value]
        if fmt == "jsonl":
            write("".join(line + "\n" for line in lines))
        else:
            write("[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n")
        return
    option = 0 if fmt == "jsonl" else orjson.OPT_INDENT_2
    write(orjson.dumps(value, option=option).decode() + "\n")


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Any], str]
    style: str | None = None
    max_width: int | None = None


def emit_rows(
    items: Sequence[Any],
    fmt: Format,
    *,
    to_json: Callable[[Any], dict[str, Any]],
    plain: Callable[[Any], Sequence[str]],
    columns: Sequence[Column],
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """Render records: `to_json` for json/jsonl, `plain` fields when piped, `columns` on a TTY.

    An empty result prints nothing (text, jsonl) or `[]` (json), so scripts see no
    noise; on a TTY `empty` is said on stderr instead.
    """
    if fmt != "text":
        with no_cycle_collection():
            emit_json([to_json(item) for item in items], fmt)
        return
    if not fancy():
        out = sys.stdout
        for item in items:
            out.write("\t".join(_one_line(field) for field in plain(item)) + "\n")
        return
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
        table.add_row(*(col.value(item) for col in columns))
    Console().print(table)


def _one_line(field: str) -> str:
    return field.replace("\t", " ").replace("\r", " ").replace("\n", " ")


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
