"""--lang: checked language tags in canonical form."""

from __future__ import annotations

import pytest

from plurcast import languages
from plurcast.errors import InvalidInput


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en", "en"),
        ("DE", "de"),
        ("pt-br", "pt-BR"),
        ("pt_BR", "pt-BR"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("tok", "tok"),
        (" fr ", "fr"),
    ],
)
def test_tags_are_checked_and_made_canonical(given: str, expected: str) -> None:
    assert languages.canonical(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("xx-notreal", "not a language tag"),
        ("xx", "xx is not a known language code"),
        ("en-XX", "XX is not a known country code"),
        ("", "not a language tag"),
        ("english", "not a language tag"),
        ("en-", "not a language tag"),
        ("e\x00n", "not a language tag"),
    ],
)
def test_bad_tags_are_refused(given: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as caught:
        languages.canonical(given)
    assert caught.value.exit_code == 3


def test_what_each_platform_takes() -> None:
    assert languages.primary("pt-BR") == "pt"
    assert languages.namespace("pt-BR") == "ISO-639-1"
    assert languages.namespace("tok") == "ISO-639-3"
