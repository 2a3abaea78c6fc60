"""Import/export file formats on their own: every bad row named by its line, and what the
writers write reads back as the same entries (hostile text included)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from plurcast.errors import InvalidInput
from plurcast.transfer import read, write
from plurcast.transfer.fields import Entry


def parse(text: str, kind: read.Kind) -> read.Parsed:
    return read.parse(text, kind)


# --- JSON Lines ------------------------------------------------------------------------


def test_jsonl_rows_and_their_fields() -> None:
    parsed = parse(
        '{"content": "Hello", "schedule": "tomorrow 9am", "platforms": ["nostr"]}\n'
        "\n"
        '{"Content": "Two", "Platforms": "nostr, mastodon", "draft": "yes", "key": 7}\n'
        '{"text": "Buffer", "posting_time": "2027-01-05 09:00", "nostr-pow": "20", "21e8": true}\n',
        "jsonl",
    )
    assert parsed.problems == []
    assert parsed.entries == [
        Entry("line 1", "Hello", schedule="tomorrow 9am", platforms=("nostr",)),
        Entry("line 3", "Two", key="7", platforms=("nostr", "mastodon"), draft=True),
        Entry("line 4", "Buffer", schedule="2027-01-05 09:00", nostr_pow=20, pow_21e8=True),
    ]


def test_thread_fields() -> None:
    parsed = parse(
        '{"thread": ["one", " two "], "variant": {"Bluesky": "short"}, "reply_to": "note1x"}\n'
        '{"content": "a\\n---\\nb", "thread": "yes", "auto-thread": true, "numbered": 1}\n'
        '{"content": "x", "variant": ["bluesky=@me hi", "mastodon=long"]}\n'
        '{"content": "x", "thread": ["a"], "variants": "bluesky=one\\nnostr=two"}\n',
        "jsonl",
    )
    assert parsed.problems == [(4, "line 4: content and a list of thread parts — give one of them")]
    one, two, three = parsed.entries
    assert (one.content, one.thread, one.variants, one.reply_to) == (
        "one\n---\ntwo",
        True,
        (("bluesky", "short"),),
        "note1x",
    )
    assert (two.thread, two.auto_thread, two.numbered) == (True, True, True)
    assert three.variants == (("bluesky", "@me hi"), ("mastodon", "long"))
    csv_row = parse('content,variant\nx,"bluesky=one\nnostr=two"\n', "csv").entries[0]
    assert csv_row.variants == (("bluesky", "one"), ("nostr", "two"))
    bad = parse('{"content": "x", "variant": "bluesky"}\n{"content": "x", "variant": 3}\n', "jsonl")
    assert [p for _, p in bad.problems] == [
        'line 1: variant must be PLATFORM=TEXT — e.g. "bluesky=Short text"',
        'line 2: variant must be a table of platform: text, not a number — e.g. {"bluesky": '
        '"Short text"}',
    ]


def test_jsonl_every_bad_row_is_listed_with_its_line() -> None:
    parsed = parse(
        "\n".join(
            [
                '{"content": "fine"}',
                '{"content": "x",}',
                "[1, 2]",
                '{"content": 5}',
                '{"content": "x", "platforms": {"a": 1}}',
                '{"content": "x", "colour": "red"}',
                '{"content": "x", "image_url": "https://a.example/a.png"}',
                '{"content": "x", "cron": "0 9 * * *", "count": "many"}',
                '{"content": "x", "nostr_pow": 65}',
                '{"content": "x", "21e8": true}',
                '{"schedule": "30m"}',
                '{"content": "x", "draft": "maybe"}',
                '{"content": "x", "visibility": "friends"}',
                '{"content": "x", "key": "a\\u0000b"}',
                '{"content": "x", "platform": "nostr", "platforms": "mastodon"}',
            ]
        ),
        "jsonl",
    )
    assert [e.where for e in parsed.entries] == ["line 1"]
    assert [line for line, _ in parsed.problems] == list(range(2, 16))
    text = "\n".join(message for _, message in parsed.problems)
    for expected in (
        "line 2: not JSON",
        "line 3: must be a JSON object",
        "line 4: content must be text",
        "line 5: platforms must be a list of names, not a table",
        'line 6: "colour" is not a field — use key, content, schedule',
        'line 7: "image_url": images by URL cannot be imported by this version of plurcast',
        "line 8: count must be a whole number, not 'many' — e.g. 10",
        "line 9: nostr_pow must be a whole number from 0 to 64, not 65",
        "line 10: 21e8 requires nostr_pow",
        "line 11: no content",
        "line 12: draft must be true or false, not 'maybe'",
        'line 13: unknown visibility "friends"',
        "line 14: key contains control characters",
        'line 15: "platforms" is given twice',
    ):
        assert expected in text


# --- CSV -------------------------------------------------------------------------------


def test_csv_with_header_quoted_cells_and_line_numbers() -> None:
    parsed = parse(
        "Content,Schedule,Platforms,Key\n"
        '"Hello, world",tomorrow 9am,"nostr,mastodon",a\n'
        "\n"
        '"two\nlines",,,b\n'
        'third,30m,,"c"\n',
        "csv",
    )
    assert parsed.problems == []
    assert [(e.where, e.content, e.key) for e in parsed.entries] == [
        ("line 2", "Hello, world", "a"),
        ("line 4", "two\nlines", "b"),
        ("line 6", "third", "c"),
    ]
    assert parsed.entries[0].platforms == ("nostr", "mastodon")
    assert parsed.entries[1].schedule is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "Hello world,2027-01-01 09:00\nSecond,30m\n",
            'line 1: the first row must name the columns; "Hello world" is not a field',
        ),
        ("schedule,platforms\n30m,nostr\n", "line 1: no content column"),
        ("content,text\na,b\n", 'line 1: columns "content" and "text" are the same field'),
        ("content,schedule\na,b,c\n", "line 2: 3 cells, but the header names 2 columns"),
        ('content\n"unclosed\n', "not CSV"),
        ("", "line 1: no header row"),
        ("\n\n", "line 1: no header row"),
    ],
)
def test_csv_problems(text: str, problem: str) -> None:
    parsed = parse(text, "csv")
    assert parsed.entries == []
    assert any(problem in p for _, p in parsed.problems), parsed.problems


# --- Markdown --------------------------------------------------------------------------


def test_markdown_posts_separated_by_plus_lines() -> None:
    parsed = parse(
        "---\n"
        "schedule: 2027-01-05 09:00\n"
        "platforms: [nostr, mastodon]\n"
        "account: no\n"
        "draft: false\n"
        "---\n"
        "First post.\n"
        "\n"
        "With a second paragraph and a rule:\n"
        "---\n"
        "\\+++\n"
        "+++\n"
        "\n"
        "+++\n"
        "Second post, no front matter.\r\n"
        "+++\n",
        "markdown",
    )
    assert parsed.problems == []
    assert parsed.entries == [
        Entry(
            "line 1",
            "First post.\n\nWith a second paragraph and a rule:\n---\n+++",
            schedule="2027-01-05 09:00",  # not a YAML timestamp: every value is read as text
            platforms=("nostr", "mastodon"),
            account="no",  # not false
        ),
        Entry("line 15", "Second post, no front matter."),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("---\nschedule: 30m\nNo end\n", "line 1: the front matter is not closed"),
        ("\n\n---\nschedule: [30m\n---\nbody\n", "line 4: front matter is not YAML"),
        ("---\n- a\n- b\n---\nbody\n", "line 2: front matter must be key: value lines"),
        ("---\ncontent: a\n---\nbody\n", "line 1: content is in the front matter and in the body"),
        ("---\nschedule: 30m\n---\n", "line 1: no content"),
        ("ok\n+++\n---\ncolour: red\n---\nx\n", 'line 3: "colour" is not a field'),
        ('---\nschedule: "\\ud800\\udc00"\n---\nx\n', "line 2: front matter has a lone surrogate"),
        ('---\nthread: ["a", "\\udfff"]\n---\n', "line 2: front matter has a lone surrogate"),
    ],
)
def test_markdown_problems(text: str, problem: str) -> None:
    parsed = parse(text, "markdown")
    assert any(problem in p for _, p in parsed.problems), parsed.problems


# --- bytes, names, sizes ---------------------------------------------------------------


def test_mixed_encodings_name_every_bad_line() -> None:
    raw = b"content\nfine\n" + b"caf\xe9\nok\n\xff\xfe x\n"
    text, problems = read.decode(raw, "posts.csv")
    assert text == ""
    assert [p[0] for p in problems] == [3, 5]
    assert "not valid UTF-8 (byte 0xe9 at column 4)" in problems[0][1]


def test_bom_utf16_and_size() -> None:
    assert read.decode(b"\xef\xbb\xbfcontent\nhi\n", "a.csv") == ("content\nhi\n", [])
    with pytest.raises(InvalidInput, match=r"a\.csv is UTF-16"):
        read.decode("content".encode("utf-16"), "a.csv")
    with pytest.raises(InvalidInput, match=r"big.csv is 52\.4 MB, over the limit of 16 MiB"):
        read.decode(b"x" * 52_400_000, "big.csv")


def test_format_from_flag_or_file_name() -> None:
    assert read.kind_of("plan.CSV", None) == "csv"
    assert read.kind_of("a.ndjson", None) == "jsonl"
    assert read.kind_of("posts/launch.md", None) == "markdown"
    assert read.kind_of("-", "csv") == "csv"
    with pytest.raises(InvalidInput, match="cannot tell the format of stdin"):
        read.kind_of("-", None)
    with pytest.raises(InvalidInput, match=r"cannot tell the format of plan\.txt"):
        read.kind_of("plan.txt", None)


def test_too_many_rows() -> None:
    with pytest.raises(InvalidInput, match="more than 100,000 rows"):
        parse('{"content": "x"}\n' * (read.MAX_ROWS + 1), "jsonl")


# --- the round trip --------------------------------------------------------------------

texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), min_size=1
).map(str.strip)
hostile = st.sampled_from(
    ["+++", "  +++ ", "\\+++", "\\\\+++", "---", "...", "a,b", 'say "hi"', "#tag", "x: y", "- z"]
)
contents = st.lists(st.one_of(texts, hostile), min_size=1, max_size=5).map(
    lambda parts: "\n".join(parts).strip()
)
words = st.one_of(
    st.sampled_from(["yes", "no", "~", "null", "true", "08:00", "1e3", "- x", "[a]", "'q'"]),
    st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=12),
).map(str.strip)
entries = st.builds(
    Entry,
    where=st.just(""),
    content=contents.filter(bool),
    key=words.map(lambda w: w or None),
    schedule=st.one_of(st.none(), st.just("2027-01-05T09:00:00+01:00"), words.filter(bool)),
    tz=st.sampled_from([None, "Europe/Berlin", "UTC"]),
    platforms=st.lists(st.sampled_from(["nostr", "mastodon", "bluesky"]), unique=True).map(tuple),
    account=st.sampled_from([None, "default", "test", "no"]),
    draft=st.booleans(),
    visibility=st.sampled_from([None, "public", "unlisted"]),
    nostr_pow=st.one_of(st.none(), st.integers(0, 64)),
    pow_21e8=st.booleans(),
    thread=st.booleans(),
    auto_thread=st.booleans(),
    numbered=st.booleans(),
    variants=st.dictionaries(
        st.sampled_from(["nostr", "mastodon", "bluesky"]), contents.filter(bool), max_size=2
    ).map(lambda d: tuple(sorted(d.items()))),
    reply_to=st.sampled_from([None, "note1abc", "https://bsky.app/profile/a.test/post/3k"]),
).filter(lambda e: e.nostr_pow is not None or not e.pow_21e8)
paths = st.one_of(
    st.sampled_from(["a.jpg", "a,b.png", 'say "hi".gif', "[x].webp", "~/ö/ü.jpg", "- z.png"]),
    words.filter(bool),
)


def _with_media(entry: Entry, images: list[tuple[str, str]], **extras: Any) -> Entry:
    return dataclasses.replace(
        entry,
        images=tuple(path for path, _ in images),
        alts=tuple(alt for _, alt in images),
        **extras,
    )


entries = st.builds(
    _with_media,
    entries,
    st.lists(st.tuples(paths, st.one_of(st.just(""), contents)), max_size=4),
    cw=st.one_of(st.none(), words.filter(bool), st.sampled_from(["+++", "a, b", "x: y"])),
    label=st.sampled_from([None, "nudity", "graphic-media"]),
    langs=st.lists(st.sampled_from(["en", "de", "pt-BR"]), unique=True, max_size=3).map(tuple),
    fit=st.sampled_from([None, True, False]),
    keep_metadata=st.booleans(),
    no_card=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(entries, min_size=1, max_size=4), kind=st.sampled_from(read.KINDS))
# A no-break space is a space, not a control character (str.isprintable() says otherwise).
@example(batch=[Entry("", "x", key="0\xa00", schedule="9\xa0am")], kind="jsonl")
@example(batch=[Entry("", "x", key="0\xa00", schedule="9\xa0am")], kind="csv")
@example(batch=[Entry("", "x", key="0\xa00", schedule="9\xa0am")], kind="markdown")
def test_what_is_written_reads_back_the_same(batch: list[Entry], kind: read.Kind) -> None:
    text = write.write(batch, kind)
    parsed = read.parse(text, kind)
    assert parsed.problems == []
    assert [e.__class__(**{**e.__dict__, "where": ""}) for e in parsed.entries] == batch
