"""Entries → the files plur-import reads: JSON Lines, CSV, Markdown.

What is written reads back as the same entries (the round trip is tested per format, with
hostile text: commas, quotes, newlines, `+++` and `---` lines, emoji).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from plurcast.transfer.fields import ALWAYS_WRITTEN, FIELDS, Entry
from plurcast.transfer.read import ESCAPABLE, SEPARATOR, Kind

# Lists whose items may hold commas or line breaks: a CSV cell holds their JSON.
_JSON_CELLS = ("images", "alt")


def fields_of(e: Entry) -> dict[str, Any]:
    """An entry as field → value, without the fields it leaves unset."""
    values: dict[str, Any] = {
        "key": e.key,
        "content": e.content,
        "schedule": e.schedule,
        "tz": e.tz,
        "platforms": list(e.platforms) or None,
        "account": e.account,
        "cron": e.cron,
        "every": e.every,
        "until": e.until,
        "count": e.count,
        "misfire": e.misfire,
        "grace": e.grace,
        "draft": e.draft or None,
        "overdue": e.overdue or None,
        "from_schedule": e.from_schedule,
        "visibility": e.visibility,
        "nostr_pow": e.nostr_pow,
        "21e8": e.pow_21e8 or None,
        "thread": e.thread or None,
        "auto_thread": e.auto_thread or None,
        "numbered": e.numbered or None,
        "variant": dict(e.variants) or None,
        "reply_to": e.reply_to,
        "images": list(e.images) or None,
        "alt": list(e.alts) if any(e.alts) else None,
        "fit": e.fit,
        "keep_metadata": e.keep_metadata or None,
        "cw": e.cw,
        "label": e.label,
        "lang": list(e.langs) or None,
        "no_card": e.no_card or None,
    }
    return {name: value for name, value in values.items() if value is not None}


def write(entries: Sequence[Entry], kind: Kind) -> str:
    return {"jsonl": _jsonl, "csv": _csv, "markdown": _markdown}[kind](entries)


def _jsonl(entries: Iterable[Entry]) -> str:
    import orjson

    return "".join(orjson.dumps(fields_of(e)).decode() + "\n" for e in entries)


def _columns(entries: Sequence[Entry]) -> list[str]:
    used = {name for e in entries for name in fields_of(e)}
    return [name for name in FIELDS if name in ALWAYS_WRITTEN or name in used]


def _csv(entries: Sequence[Entry]) -> str:
    out = io.StringIO(newline="")
    columns = _columns(entries)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for e in entries:
        values = fields_of(e)
        writer.writerow([_cell(values.get(name), name) for name in columns])
    return out.getvalue()


def _cell(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dict) or (isinstance(value, list) and name in _JSON_CELLS):
        import json  # a variant table, image paths, alt texts: their JSON (lines would break

        return json.dumps(value, ensure_ascii=False)  # at a text's own newlines)
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _markdown(entries: Iterable[Entry]) -> str:
    import yaml

    class OneLine(yaml.SafeDumper):
        """Every value on its key's line: a text with line breaks is double-quoted with
        `\\n`, so no line of the front matter can read as `---` or `+++`."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = '"' if any(c in value for c in "\n\r\x85\u2028\u2029") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    OneLine.add_representer(str, text)
    posts = []
    for e in entries:
        front = {k: v for k, v in fields_of(e).items() if k != "content"}
        # BaseLoader reads every scalar back as text; fields parse their own types.
        matter = yaml.dump(
            front,
            Dumper=OneLine,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=None,
            width=2**30,
        )
        body = "\n".join(_escape(line) for line in e.content.split("\n"))
        posts.append(f"---\n{matter}---\n{body}\n")
    return f"{SEPARATOR}\n".join(posts)


def _escape(line: str) -> str:
    """A body line that reads as the separator gets one more backslash before its `+++`."""
    if not ESCAPABLE.fullmatch(line):
        return line
    at = len(line) - len(line.lstrip())
    return line[:at] + "\\" + line[at:]
