"""JSON on stdout: UTF-8 bytes written as each record is encoded, in order with text."""

from __future__ import annotations

import io
import json
import sys

import pytest

from plurcast import output

RECORDS = [{"content": "Grüße ✨"}, {"content": "}, {"}]


def written(monkeypatch: pytest.MonkeyPatch, stream: io.TextIOBase) -> None:
    monkeypatch.setattr(sys, "stdout", stream)
    sys.stdout.write("before\n")
    output.emit_json(RECORDS, "json")
    output.emit_rows(
        RECORDS, "jsonl", to_json=lambda r: {"c": r["content"]}, plain=list, columns=[]
    )
    output.emit_json({"a": [1]}, "json")
    output.emit_json({"a": [1]}, "jsonl")
    output.emit_json([], "json")
    output.emit_json([], "jsonl")
    sys.stdout.write("after\n")


EXPECTED = [
    "before",
    "[",
    '{"content":"Grüße ✨"},',
    '{"content":"}, {"}',
    "]",
    '{"c":"Grüße ✨"}',
    '{"c":"}, {"}',
    "{",
    '  "a": [',
    "    1",
    "  ]",
    "}",
    '{"a":[1]}',
    "[]",
    "after",
    "",
]


def test_json_goes_to_stdouts_bytes_after_the_text_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Text still waiting in stdout's text layer comes first; nothing is \\u-escaped."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    written(monkeypatch, stream)
    stream.flush()
    lines = raw.getvalue().decode("utf-8").split("\n")
    assert lines == EXPECTED
    assert json.loads("\n".join(lines[1:5])) == RECORDS


def test_json_on_a_text_only_stdout_is_the_same_text(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    written(monkeypatch, stream)
    assert stream.getvalue().split("\n") == EXPECTED


def test_text_isprintable_accepts_holds_nothing_to_escape() -> None:
    """printable() returns such text as it is, without its pattern: for that to change
    nothing, no character str.isprintable() accepts may be one the pattern escapes."""
    import re

    unsafe = re.compile(output.UNSAFE)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert not (char.isprintable() and unsafe.match(char)), hex(code)
    assert output.printable("tab\tkept, \x1b[31m and \u202e escaped, é ok") == (
        "tab\tkept, \\x1b[31m and \\u202e escaped, é ok"
    )


def test_a_byte_that_is_not_utf8_is_shown_as_that_byte() -> None:
    """argv and file names reach Python with each such byte as a lone surrogate
    (surrogateescape); a message shows the byte the user typed, not the surrogate."""
    typed = b"1h\xff \x80".decode("utf-8", "surrogateescape")
    assert output.printable(typed) == "1h\\xff \\x80"
    assert output.printable("\ud800 \udfff") == "\\ud800 \\udfff"  # other surrogates stay
