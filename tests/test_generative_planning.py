"""Generated hostile input (issue 11) for plur-import, plur-export and plur-history, on the
seeded database of tests/generative.py and checked as it says: import files of every format
and field, well formed (most of them, so that runs get to the write), broken or mis-encoded;
export filters and -o targets; history filters and formats.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from plur_queue.plur_export import cli as export_cli
from plur_queue.plur_history import cli as history_cli
from plur_queue.plur_import import cli as import_cli
from tests.generative import (
    GOOD_WHEN,
    LOG_LEVEL,
    NUMBERS,
    ZONES,
    Invocation,
    generated,
    junk,
    mostly,
    option,
    seeded,
    texts,
    whens,
)

__all__ = ["seeded"]  # the fixture every test here takes
EXAMPLES = {"plur-import": 150, "plur-export": 75, "plur-history": 75}

# plur-import: rows of every field, written as each format would be (or broken on purpose)
ROW_FIELDS = ["schedule", "tz", "platforms", "account", "draft", "visibility", "nostr_pow",
              "21e8", "thread", "auto_thread", "numbered", "variant", "reply_to",
              "key", "cron", "every", "until", "count", "misfire", "grace"]  # fmt: skip
REFUSED_FIELDS = ["cw", "images", "image_url", "bogus", "", "Content", "text", "Posting Time"]
SUFFIXES = {"jsonl": ".jsonl", "csv": ".csv", "markdown": ".md"}
DATES = ["7d", "12h", "2h ago", "2026-11-21", "2027-01-01T10:00:00Z", "1795428000", "0",
         "0001-01-01", "9999-12-31", "-999999999999", "2025-02-30", "36526d", "last week",
         "", "\x1b[2J"]  # fmt: skip


Choices = st.SearchStrategy[Any]


def field_values(seeded_ids: list[str]) -> dict[str, tuple[Choices, Choices]]:
    """What a row's field may hold, good and bad, typed as JSON or YAML would have it."""
    flag = st.sampled_from([True, False, "yes", "no", 1]), st.sampled_from(["maybe", 2])
    plausible = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1)
    return {
        "schedule": (st.sampled_from(GOOD_WHEN), whens()),
        "tz": (st.sampled_from([*ZONES[:3], ""]), st.sampled_from(ZONES)),
        "platforms": (
            st.sampled_from(["nostr", ["nostr"], "", "nostr, nostr"]),
            st.sampled_from(["mastodon", "bluesky", "myspace", ",", ["nostr", 1], {"a": 1}]),
        ),
        "account": (st.sampled_from(["test", "default"]), st.sampled_from(["nope", 3, ""])),
        "draft": flag,
        "visibility": (st.sampled_from(["public", "Direct"]), st.just("secret")),
        "nostr_pow": (st.sampled_from([0, "2", ""]), st.sampled_from(["65", -1, "x", 1.5])),
        "21e8": flag,
        "thread": (flag[0], st.one_of(flag[1], st.lists(texts(), max_size=3))),
        "auto_thread": flag,
        "numbered": flag,
        "variant": (
            st.builds(lambda t: {"nostr": t}, plausible.filter(str.strip)),
            st.sampled_from(["nostr=", "myspace=x", "{not json", ["x"], {"nostr": 1}]),
        ),
        "reply_to": (st.sampled_from([*seeded_ids[:3], "note1abc"]), st.text(max_size=20)),
        "cron": (
            st.sampled_from(["0 9 * * 1-5", "*/30 * * * *"]),
            st.sampled_from(["0 9 * *", "* * * * * *", "61 * * * *", "x", 5]),
        ),
        "every": (st.sampled_from(["6h", "1d", "90m"]), st.sampled_from(["30s", "often", 0])),
        "until": (st.sampled_from(["2027-06-01", "in 30 days"]), whens()),
        "count": (st.sampled_from([1, "10"]), st.sampled_from([0, -1, "many", 10**7, True])),
        "misfire": (st.sampled_from(["latest", "skip", "ALL"]), st.sampled_from(["never", 1])),
        "grace": (st.sampled_from(["1h", "30m"]), st.sampled_from(["soon", "0s", []])),
        "key": (
            st.sampled_from(["a", "b", "tip-1", 7]),
            st.one_of(texts(), st.sampled_from([True, "k" * 201, [1], "a\x00b"])),
        ),
    }


@st.composite
def import_rows(draw: st.DrawFn, seeded_ids: list[str], clean: bool) -> dict[str, Any]:
    """One row; a `clean` one holds good values only, so that most files get past the
    checks to the write."""
    values = field_values(seeded_ids)
    row: dict[str, Any] = {}
    if clean or draw(st.integers(0, 9)):
        row["content"] = draw(texts().filter(str.strip) if clean else texts())
    for name in draw(st.lists(st.sampled_from(ROW_FIELDS), max_size=4, unique=True)):
        good, bad = values[name]
        row[name] = draw(good if clean else mostly(good, bad))
    if not clean and draw(st.integers(0, 9)) == 0:
        row[draw(st.sampled_from(REFUSED_FIELDS))] = "x"
    return row


def cell(value: Any) -> str:
    """A value as a CSV cell or front-matter scalar carries it: text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return json.dumps(value) if isinstance(value, dict) else str(value)


def file_text(rows: list[dict[str, Any]], kind: str) -> str:
    if kind == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if kind == "csv":
        out = io.StringIO()
        names = list(dict.fromkeys(name for row in rows for name in row))
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows([cell(row[n]) if n in row else "" for n in names] for row in rows)
        return out.getvalue()
    posts = []
    for row in rows:
        front = [f"{n}: {json.dumps(v)}" for n, v in row.items() if n != "content"]
        body = cell(row.get("content", ""))
        posts.append("---\n" + "".join(f"{line}\n" for line in front) + "---\n" + body + "\n")
    return "+++\n".join(posts)


def encoded(text: str, clean: bool) -> st.SearchStrategy[bytes]:
    """The file's bytes: UTF-8 (with a BOM or not), else mis-encoded or damaged."""
    data = text.encode("utf-8", "surrogatepass")
    if clean:
        return st.sampled_from([data, b"\xef\xbb\xbf" + data])
    damaged = st.builds(
        lambda at, junk: data[:at] + junk + data[at:],
        st.integers(0, len(data)),
        st.binary(max_size=4),
    )
    return mostly(
        st.sampled_from([data, b"\xef\xbb\xbf" + data]),
        st.one_of(
            damaged,
            st.just(text.encode("utf-16", "surrogatepass")),
            st.just(text.encode("latin-1", "replace")),
            st.just(data[: len(data) // 2]),
            st.binary(max_size=200),
        ),
    )


@st.composite
def import_invocations(draw: st.DrawFn, seeded_ids: list[str], inbox: Path) -> Invocation:
    kind = draw(st.sampled_from(list(SUFFIXES)))
    clean = draw(st.integers(0, 2)) > 0
    rows = draw(st.lists(import_rows(seeded_ids, clean), min_size=1, max_size=4))
    if clean:  # rows of one file that say the same are refused: keys of their own
        for number, row in enumerate(rows, start=1):
            row["key"] = f"row-{number}"
    data = draw(encoded(file_text(rows, kind), clean))
    sources = ["stdin", "file", "two"] if clean else ["stdin", "file", "missing", "dir"]
    source = draw(st.sampled_from(sources))
    args: list[str] = []
    files: list[tuple[Path, bytes]] = []
    stdin = None
    given = st.just(kind) if clean else mostly(st.just(kind), st.sampled_from(["xml", *SUFFIXES]))
    if source == "stdin":
        stdin = data
        args += ["-", "-f", draw(given)] if clean else ["-", *draw(option("-f", given))]
    else:
        odd = st.sampled_from([".txt", "", ".CSV"])
        suffix = SUFFIXES[kind] if clean else draw(mostly(st.just(SUFFIXES[kind]), odd))
        path = inbox / f"plan{suffix}"
        if source == "missing":
            path = inbox / "missing.csv"
        elif source == "dir":
            path = inbox
        else:
            files.append((path, data))
        args.append(str(path))
        if source == "two":
            other = inbox / f"more{SUFFIXES[kind]}"
            more = draw(import_rows(seeded_ids, clean)) | {"key": "more"}
            files.append((other, draw(encoded(file_text([more], kind), clean))))
            args.append(str(other))
        args += draw(option("-f", given))
    args += draw(st.sampled_from([[], [], ["--dry-run"]]))
    report = draw(option("--report", st.sampled_from(["text", "json", "jsonl"]), st.just("xml")))
    args += report + draw(LOG_LEVEL) + draw(junk())
    return Invocation(args, stdin, exact=report[1:] in (["json"], ["jsonl"]), files=tuple(files))


@st.composite
def export_invocations(draw: st.DrawFn, outbox: Path) -> Invocation:
    statuses = mostly(
        st.sampled_from(["all", "scheduled,draft", "posted", "failed, cancelled", "DRAFT"]),
        st.sampled_from(["bogus", ",", "", "all,bogus"]),
    )
    names = mostly(
        st.sampled_from(["out.csv", "out.jsonl", "out.md", "out.markdown"]),
        st.sampled_from(["out.txt", "out", "", "missing/out.csv", "."]),
    )
    args: list[str] = []
    for opt in (
        option("-f", st.sampled_from(list(SUFFIXES)), st.just("xml")),
        option("-o", names.map(lambda name: str(outbox / name))),
        option("--status", statuses),
        option("--since", mostly(st.sampled_from(DATES[:9]), st.sampled_from(DATES))),
        option("--until", mostly(st.sampled_from(DATES[:9]), st.sampled_from(DATES))),
        LOG_LEVEL,
    ):
        args += draw(opt)
    args += draw(junk())
    return Invocation(args, exact=True)


@st.composite
def history_invocations(draw: st.DrawFn) -> Invocation:
    fmt = draw(option("-f", st.sampled_from(["text", "json", "jsonl", "csv"]), st.just("xml")))
    args = list(fmt)
    for opt in (
        option("-p", st.sampled_from(["nostr", "Nostr"]), st.sampled_from(["myspace", ",", ""])),
        option("--since", mostly(st.sampled_from(DATES[:9]), st.sampled_from(DATES))),
        option("--until", mostly(st.sampled_from(DATES[:9]), st.sampled_from(DATES))),
        option("-s", mostly(st.sampled_from(["p", "RED", "ß"]), texts())),
        option("-l", st.sampled_from(["1", "20"]), st.sampled_from(NUMBERS)),
        st.sampled_from([[], [], ["-v"]]),
        LOG_LEVEL,
    ):
        args += draw(opt)
    args += draw(junk())
    return Invocation(args, exact=fmt[1:] in (["json"], ["jsonl"], ["csv"]))


test_generated_plur_import = generated(
    EXAMPLES["plur-import"], lambda s: import_invocations(s.ids(), s.inbox), import_cli
)
test_generated_plur_export = generated(
    EXAMPLES["plur-export"], lambda s: export_invocations(s.outbox), export_cli
)
test_generated_plur_history = generated(
    EXAMPLES["plur-history"], lambda s: history_invocations(), history_cli
)
