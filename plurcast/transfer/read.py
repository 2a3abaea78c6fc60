"""Import files → entries: JSON Lines, CSV with a header row, Markdown with front matter.

Every problem is collected with the line it is on, so that one run lists every bad row;
nothing here touches the queue. The whole input must be UTF-8 (a leading BOM is fine) and
at most MAX_BYTES: a spreadsheet saved as Latin-1 or UTF-16 is refused with its line, not
guessed at.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from plurcast.errors import InvalidInput
from plurcast.transfer.fields import Entry, FieldError, entry, field_name

Kind = Literal["jsonl", "csv", "markdown"]
KINDS: tuple[Kind, ...] = ("jsonl", "csv", "markdown")
MAX_BYTES = 16 * 1024 * 1024
MAX_ROWS = 100_000
SEPARATOR = "+++"  # between posts in one Markdown file
_EXTENSIONS: dict[str, Kind] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".md": "markdown",
    ".markdown": "markdown",
}
# A body line `\+++` stands for `+++` (which would end the post), `\\+++` for `\+++` …
ESCAPABLE = re.compile(r"\s*\\*\+\+\+\s*")
_ESCAPED = re.compile(r"\s*\\+\+\+\+\s*")
_FENCE = "---"


Problem = tuple[int, str]  # (line, what is wrong there)


@dataclass
class Parsed:
    """What a file said: its entries, and every problem found, by line (each message
    names its line too: `line 3: …`)."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def kind_of(name: str, given: str | None) -> Kind:
    """The format: --format, else the file name's extension."""
    if given is not None:
        return given  # type: ignore[return-value]  # click.Choice(KINDS) checked it
    lowered = name.lower()
    for extension, kind in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return kind
    if name == "-":
        raise InvalidInput("cannot tell the format of stdin", "add --format jsonl, csv or markdown")
    raise InvalidInput(
        f"cannot tell the format of {name} from its name",
        "name it .jsonl, .csv or .md, or add --format jsonl|csv|markdown",
    )


def decode(raw: bytes, name: str, size: int | None = None) -> tuple[str, list[Problem]]:
    """The text of a file, and a problem for each line that is not UTF-8. `size` is the
    whole file's, when only the first MAX_BYTES + 1 bytes were read."""
    if len(raw) > MAX_BYTES:
        limit = f"the limit of {MAX_BYTES // 2**20} MiB"
        if size is None and len(raw) == MAX_BYTES + 1:  # only that much was read
            raise InvalidInput(f"{name} is over {limit}", "split it into smaller files")
        raise InvalidInput(
            f"{name} is {(size or len(raw)) / 1e6:.1f} MB, over {limit}",
            "split it into smaller files",
        )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput(f"{name} is UTF-16", "save it as UTF-8 (CSV UTF-8 in a spreadsheet)")
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    problems = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(
                (
                    number,
                    f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
                    " — save the file as UTF-8, e.g. iconv -f latin1 -t utf-8",
                )
            )
    return "", problems


def label(line: int, source: str = "") -> str:
    """Where a row is, for messages: `line 3`, or `posts/a.md:3` when there are several files."""
    return f"{source}:{line}" if source else f"line {line}"


def parse(text: str, kind: Kind, source: str = "") -> Parsed:
    """Entries of one file's text; `source` names the file when there are several."""
    parsed = Parsed()
    problems: list[Problem] = []
    reader = {"jsonl": _jsonl, "csv": _csv, "markdown": _markdown}[kind]
    for line, values in reader(text, problems):
        if len(parsed.entries) + len(problems) >= MAX_ROWS:
            raise InvalidInput(f"more than {MAX_ROWS:,} rows", "split the file")
        try:
            parsed.entries.append(entry(label(line, source), values, line))
        except FieldError as exc:
            problems.append((line, _message(exc)))
    parsed.problems = labelled(problems, source)
    return parsed


def labelled(problems: list[Problem], source: str = "") -> list[Problem]:
    """Problems in line order, each message starting with where it is."""
    return [(line, f"{label(line, source)}: {what}") for line, what in sorted(problems)]


def _message(exc: Exception) -> str:
    message, hint = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
    return f"{message} — {hint}" if hint else str(message)


# --- JSON Lines ------------------------------------------------------------------------


def _jsonl(text: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    import orjson

    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append((number, f"not JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(value, dict):
            problems.append((number, 'must be a JSON object, e.g. {"content": "Hi"}'))
            continue
        yield number, value


# --- CSV -------------------------------------------------------------------------------


def _csv(text: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    done = 0
    try:
        for record in reader:
            start = reader.line_num - sum(cell.count("\n") for cell in record)
            start = max(start, done + 1)
            done = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = _header(record, start, problems)
                if header is None:
                    return
                continue
            if len(record) > len(header):
                problems.append(
                    (
                        start,
                        f"{len(record)} cells, but the header names {len(header)} columns"
                        " — quote cells that contain commas",
                    )
                )
                continue
            yield start, {name: cell for name, cell in zip(header, record, strict=False) if cell}
    except csv.Error as exc:
        problems.append((reader.line_num, f"not CSV ({exc})"))
        return
    if header is None:
        problems.append((1, "no header row — the first row must name the columns"))


def _header(record: Sequence[str], line: int, problems: list[Problem]) -> list[str] | None:
    """Column names (the raw spellings, checked): a first row that is data is refused."""
    names: list[str] = []
    seen: dict[str, str] = {}
    for cell in record:
        try:
            name = field_name(cell)
        except FieldError as exc:
            problems.append((line, f"the first row must name the columns; {_message(exc)}"))
            return None
        if name in seen:
            problems.append((line, f'columns "{seen[name]}" and "{cell}" are the same field'))
            return None
        seen[name] = cell
        names.append(cell)
    if "content" not in seen:
        problems.append(
            (
                line,
                "no content column — the first row must name the columns, "
                "e.g. content,schedule,platforms",
            )
        )
        return None
    return names


# --- Markdown --------------------------------------------------------------------------


def _markdown(text: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Posts separated by lines of `+++`, each an optional `---` front matter block and a
    body (the content). A body line `\\+++` stands for `+++`."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = 0
    for number in range(len(lines) + 1):
        if number < len(lines) and lines[number].strip() != SEPARATOR:
            continue
        post = _markdown_post(lines[start:number], start + 1, problems)
        if post is not None:
            yield post
        start = number + 1


def _markdown_post(
    lines: list[str], first: int, problems: list[Problem]
) -> tuple[int, dict[str, Any]] | None:
    offset = 0
    while offset < len(lines) and not lines[offset].strip():
        offset += 1
    if offset == len(lines):
        return None  # nothing between two separators
    where = first + offset
    values: dict[str, Any] = {}
    body = lines[offset:]
    if body[0].rstrip() == _FENCE:
        end = next((i for i in range(1, len(body)) if body[i].rstrip() in (_FENCE, "...")), None)
        if end is None:
            problems.append((where, "the front matter is not closed — end it with ---"))
            return None
        front = _front_matter("\n".join(body[1:end]), where + 1, problems)
        if front is None:
            return None
        values, body = front, body[end + 1 :]
    text = "\n".join(_unescape(line) for line in body).strip()
    if text:
        if "content" in {_quiet_name(k) for k in values}:
            problems.append((where, "content is in the front matter and in the body"))
            return None
        values["content"] = text
    return where, values


def _front_matter(text: str, line: int, problems: list[Problem]) -> dict[str, Any] | None:
    """YAML read with every scalar as text: `no` stays "no", 09:00 stays "09:00"."""
    import yaml

    try:
        value = yaml.load(text, Loader=yaml.BaseLoader) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = line + mark.line if mark is not None else line
        reason = getattr(exc, "problem", None) or "not YAML"
        problems.append((at, f"front matter is not YAML ({reason})"))
        return None
    if not isinstance(value, dict):
        problems.append((line, "front matter must be key: value lines"))
        return None
    if _surrogate(value):  # YAML's "\ud800" escapes are not text (JSON refuses them too)
        problems.append(
            (line, 'front matter has a lone surrogate such as "\\ud800" — write the character')
        )
        return None
    return {str(k): v for k, v in value.items()}


def _surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_surrogate(k) or _surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(_surrogate(v) for v in value)


def _quiet_name(raw: str) -> str:
    try:
        return field_name(raw)
    except FieldError:
        return raw


def _unescape(line: str) -> str:
    if not _ESCAPED.fullmatch(line):
        return line
    at = line.index("\\")
    return line[:at] + line[at + 1 :]
