"""plurcast.content: size, encoding and per-platform length rules, checked at schedule time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from plurcast.content import (
    BLUESKY_MAX_GRAPHEMES,
    MAX_BYTES,
    check_limits,
    decode,
    graphemes,
    mastodon_length,
    normalise,
)
from plurcast.errors import EXIT_INVALID, InvalidInput

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦, 25 bytes
FLAG_DE = "\U0001f1e9\U0001f1ea"  # 🇩🇪
GRINNING = "\U0001f600"  # 😀, 4 bytes
E_ACUTE = "e\u0301"  # e + combining acute accent


def invalid(func: Callable[..., object], *args: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        func(*args)
    assert caught.value.exit_code == EXIT_INVALID == 3
    return caught.value


# --- normalise ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hello", "hello"),
        ("hello\n", "hello"),
        ("  \t hello world \r\n\n", "hello world"),
        ("line one\nline two\n", "line one\nline two"),
        ("\u00a0nbsp\u00a0", "nbsp"),
    ],
)
def test_normalise_strips(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize("raw", ["", " ", "\n", "\t\r\n  \n", "\u3000"])
def test_normalise_refuses_empty(raw: str) -> None:
    err = invalid(normalise, raw)
    assert err.message == "content is empty"


def test_normalise_exactly_max_bytes_is_fine() -> None:
    assert MAX_BYTES == 100_000
    text = "a" * 100_000
    assert normalise(text) == text
    multibyte = "é" * 50_000  # 2 bytes each
    assert normalise(multibyte) == multibyte


@pytest.mark.parametrize("text", ["a" * 100_001, "é" * 50_000 + "a"])
def test_normalise_one_byte_over_names_the_size(text: str) -> None:
    err = invalid(normalise, text)
    assert "100,001 bytes" in err.message
    assert "100,000" in err.message


def test_normalise_limit_applies_to_stripped_content() -> None:
    text = "a" * 100_000
    assert normalise(text + "\n") == text


@pytest.mark.parametrize("text", ["abc\udcff", "\ud800", "ok \udc80\udc81 ok"])
def test_normalise_lone_surrogates_are_not_utf8(text: str) -> None:
    err = invalid(normalise, text)
    assert err.message == "content is not valid UTF-8"


# --- decode ------------------------------------------------------------------------------


def test_decode_valid_utf8() -> None:
    assert decode("héllo 👋\n".encode()) == "héllo 👋\n"


@pytest.mark.parametrize(
    ("raw", "byte", "offset"),
    [
        (b"abc\xffdef", "0xff", 3),
        (b"\xe9t\xe9", "0xe9", 0),
        ("caf\u00e9 ".encode() + b"\xc3(", "0xc3", 6),
    ],
)
def test_decode_names_byte_and_offset(raw: bytes, byte: str, offset: int) -> None:
    err = invalid(decode, raw)
    assert "not valid UTF-8" in err.message
    assert f"byte {byte} at offset {offset}" in err.message


# --- counting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 0),
        ("abc", 3),
        (FAMILY, 1),
        (FLAG_DE, 1),
        (FLAG_DE + FLAG_DE, 2),
        (E_ACUTE, 1),
        ("cafe\u0301!", 5),
        ("\U0001f44b\U0001f3fd", 1),  # waving hand + skin tone
        (FAMILY + " " + FLAG_DE + E_ACUTE, 4),
    ],
)
def test_graphemes(text: str, count: int) -> None:
    assert graphemes(text) == count


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("https://example.com", 23),
        ("http://x.y", 23),
        ("see https://example.com/a/very/long/path?with=query&and=more#frag ok", 4 + 23 + 3),
        ("HTTPS://EXAMPLE.COM/X", 23),
        ("@alice@example.social", 6),
        ("hi @alice@example.social!", 3 + 6 + 1),
        ("@alice", 6),
        ("mail bob@example.com", 20),
        ("two https://a.example https://b.example", 4 + 23 + 1 + 23),
        ("@bob@mastodon.example.org https://example.com " + FAMILY, 4 + 1 + 23 + 1 + 1),
    ],
)
def test_mastodon_length(text: str, length: int) -> None:
    assert mastodon_length(text) == length


def test_mastodon_length_url_followed_by_full_stop() -> None:
    assert mastodon_length("Read https://example.com/post.") == 5 + 23 + 1


# --- check_limits --------------------------------------------------------------------------


def test_mastodon_at_limit_is_fine() -> None:
    check_limits("a" * 500, ["mastodon"], 500)


def test_mastodon_over_limit_names_platform_limit_and_length() -> None:
    err = invalid(check_limits, "a" * 501, ["nostr", "mastodon"], 500)
    assert "mastodon" in err.message
    assert "500" in err.message
    assert "501" in err.message
    assert "bluesky" not in err.message


def test_mastodon_url_counts_23_at_the_limit() -> None:
    text = "a" * 476 + " https://example.com/" + "x" * 200  # 476 + 1 + 23 = 500
    check_limits(text, ["mastodon"], 500)
    err = invalid(check_limits, "a" + text, ["mastodon"], 500)
    assert "501" in err.message


def test_mastodon_configured_max_chars() -> None:
    check_limits("a" * 5000, ["mastodon"], 5000)
    err = invalid(check_limits, "a" * 5001, ["mastodon"], 5000)
    assert "5,000" in err.message
    assert "5,001" in err.message
    err = invalid(check_limits, "a" * 281, ["mastodon"], 280)
    assert "280" in err.message
    assert "281" in err.message


def test_mastodon_limit_ignored_when_mastodon_not_targeted() -> None:
    check_limits("a" * 501, ["nostr"], 500)


def test_bluesky_300_graphemes_of_multibyte_emoji_is_fine() -> None:
    assert BLUESKY_MAX_GRAPHEMES == 300
    text = GRINNING * 300
    assert len(text.encode()) == 1200
    check_limits(text, ["bluesky"], 500)
    check_limits(E_ACUTE * 300, ["bluesky"], 500)
    check_limits("a" * 300, ["bluesky"], 500)


@pytest.mark.parametrize("text", ["a" * 301, GRINNING * 301, E_ACUTE * 301])
def test_bluesky_301_graphemes_is_refused(text: str) -> None:
    err = invalid(check_limits, text, ["bluesky"], 500)
    assert "bluesky" in err.message
    assert "300" in err.message
    assert "301" in err.message


def test_bluesky_byte_limit_is_checked() -> None:
    text = FAMILY * 300
    assert graphemes(text) == 300
    assert len(text.encode()) == 7500
    err = invalid(check_limits, text, ["bluesky"], 500)
    assert "bluesky" in err.message


def test_nostr_limit_is_in_bytes_and_configurable() -> None:
    check_limits("a" * 65_536, ["nostr"], 500)
    check_limits(FAMILY * 2600, ["nostr"], 500)  # 65,000 bytes, 2,600 characters
    err = invalid(check_limits, "a" * 65_537, ["nostr"], 500)
    assert err.message == "content is 65,537 bytes, over nostr's limit of 65,536"
    check_limits("a" * 100_000, ["nostr"], 500, 100_000)
    assert invalid(check_limits, "é" * 2049, ["nostr"], 500, 4096).message.startswith(
        "content is 4,098 bytes"
    )


def test_first_platform_over_limit_is_named() -> None:
    err = invalid(check_limits, "a" * 600, ["bluesky", "mastodon"], 500)
    assert "mastodon" in err.message
    err = invalid(check_limits, "a" * 400, ["bluesky", "mastodon"], 500)
    assert "bluesky" in err.message
    assert "400" in err.message
