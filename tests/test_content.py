"""plurcast.content: a post's encoding and size, and the ways of counting its text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from plurcast.content import MAX_BYTES, decode, graphemes, normalise, utf8_bytes
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
        ("a\r\nb", 3),  # CR LF is one character
        ("\r\r\n\n", 3),
        ("na\u00efve \u0141\u00f3d\u017a\u00ad", 11),  # Latin-1 and Latin Extended-A
        ("\u02ff\u0300", 1),  # the first combining mark joins the character before it
    ],
)
def test_graphemes(text: str, count: int) -> None:
    assert graphemes(text) == count


# Every code point below U+0300 (where text is counted without the regex module) and a few
# above it, in any order: the count is always the regex module's.
_BELOW_COMBINING = st.characters(max_codepoint=0x2FF, exclude_categories=["Cs"])


@given(st.text(st.one_of(_BELOW_COMBINING, st.sampled_from("\r\n\u0300\u200d"))))
def test_graphemes_are_counted_as_the_regex_module_counts(text: str) -> None:
    assert graphemes(text) == len(regex.findall(r"\X", text))


@pytest.mark.parametrize(("text", "size"), [("", 0), ("abc", 3), (E_ACUTE, 3), (FAMILY, 25)])
def test_utf8_bytes(text: str, size: int) -> None:
    assert utf8_bytes(text) == size
