"""plurcast.thread.split: cutting a text into thread parts by each platform's own counting."""

from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from plurcast.content import graphemes
from plurcast.errors import EXIT_INVALID, InvalidInput
from plurcast.platforms.registry import mastodon_length
from plurcast.thread.split import MAX_PARTS, Limit, explicit_parts, thread_parts


def utf8(text: str) -> int:
    return len(text.encode())


def mastodon(chars: int = 500) -> list[Limit]:
    return [Limit("mastodon", mastodon_length, chars, "characters")]


def bluesky(chars: int = 300, size: int = 3000) -> list[Limit]:
    return [
        Limit("bluesky", graphemes, chars, "characters"),
        Limit("bluesky", utf8, size, "bytes"),
    ]


def nostr(size: int = 65536) -> list[Limit]:
    return [Limit("nostr", utf8, size, "bytes")]


def cut(text: str, limits: list[Limit], *, numbered: bool = False) -> list[str]:
    return thread_parts([text], limits, auto=True, numbered=numbered)


FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one cluster, 25 bytes
FLAG = "\U0001f1e9\U0001f1ea"
URL = "https://example.com/a/very/long/path/that/mastodon/counts/as/twenty-three"


# --- choosing where to cut -----------------------------------------------------------------


def test_text_that_fits_is_one_part_and_never_numbered() -> None:
    assert cut("Hello world.", mastodon()) == ["Hello world."]
    assert cut("Hello world.", mastodon(), numbered=True) == ["Hello world."]


def test_paragraphs_come_first() -> None:
    first = "First paragraph. " + "a " * 100  # 217 characters
    second = "Second paragraph. " + "b " * 100
    text = f"{first.strip()}\n\n{second.strip()}"
    assert cut(text, mastodon(300)) == [first.strip(), second.strip()]


def test_a_paragraph_break_that_leaves_a_part_too_short_is_passed_over() -> None:
    heading = "Title"
    body = ". ".join(f"Sentence number {i} is here" for i in range(30)) + "."
    parts = cut(f"{heading}\n\n{body}", mastodon(200))
    assert parts[0].startswith("Title\n\nSentence number 0")
    assert parts[0].endswith(".")


def test_sentences_before_words() -> None:
    text = "One two three four five. Six seven eight nine ten eleven twelve."
    assert cut(text, mastodon(40)) == [
        "One two three four five.",
        "Six seven eight nine ten eleven twelve.",
    ]


def test_a_line_break_counts_as_a_sentence_end() -> None:
    text = "- milk and bread and eggs\n- a newspaper for grandpa today"
    assert cut(text, mastodon(40)) == [
        "- milk and bread and eggs",
        "- a newspaper for grandpa today",
    ]


def test_words_when_there_is_no_sentence_end_within_reach() -> None:
    text = " ".join(["word"] * 30)  # 149 characters
    parts = cut(text, mastodon(50))
    assert all(mastodon_length(p) <= 50 for p in parts)
    assert " ".join(parts) == text
    assert len(parts) == 3


def test_closing_quotes_after_a_full_stop_end_the_sentence() -> None:
    text = 'She said "stop." Then she left the room and closed the door behind her quietly.'
    assert cut(text, mastodon(30))[0] == 'She said "stop."'


def test_cjk_is_cut_after_its_full_stops() -> None:
    sentence = "今日はとても良い天気ですね。"  # 14 characters, no spaces
    text = sentence * 30
    parts = cut(text, bluesky(100))
    assert all(p.endswith("。") for p in parts)
    assert "".join(parts) == text
    assert all(graphemes(p) <= 100 for p in parts)


def test_a_word_longer_than_a_part_is_cut_between_clusters() -> None:
    text = FAMILY * 400  # 400 clusters, 10,000 bytes
    parts = cut(text, bluesky(300, 3010))  # 3,010 bytes would end inside the 121st family
    assert "".join(parts) == text
    assert [len(p) // len(FAMILY) for p in parts] == [120, 120, 120, 40]
    assert all(p == FAMILY * (len(p) // len(FAMILY)) for p in parts)


def test_mastodon_counts_links_as_23_when_cutting() -> None:
    text = " ".join([URL] * 40)  # 40 links of 74 characters: 40 * 24 - 1 = 959 as Mastodon counts
    parts = cut(text, mastodon())
    assert len(parts) == 2
    assert all(mastodon_length(p) <= 500 for p in parts)
    assert max(len(p) for p in parts) > 500  # longer than 500 characters as Python counts


def test_nostr_is_cut_only_over_max_bytes() -> None:
    text = "word " * 2000
    assert cut(text.strip(), nostr()) == [text.strip()]
    parts = cut(text.strip(), nostr(1000))
    assert all(utf8(p) <= 1000 for p in parts)


def test_a_link_longer_than_the_limit_is_refused_not_cut() -> None:
    link = "https://example.com/" + "x" * 400
    with pytest.raises(InvalidInput) as caught:
        cut(f"see {link} there", bluesky())
    assert caught.value.exit_code == EXIT_INVALID
    assert "bluesky's limit of 300" in caught.value.message
    assert "cannot be split" in caught.value.message


def test_a_long_word_is_not_cut_inside_a_mention_or_tag_in_it() -> None:
    word = "x" * 50 + "(@alice.bsky.social)" + "y" * 50 + "(#plurcast)" + "z" * 50
    parts = cut(word, bluesky(60))
    assert "".join(parts) == word
    assert any("@alice.bsky.social" in p for p in parts)
    assert any("#plurcast" in p for p in parts)


@pytest.mark.parametrize(
    "tag",
    [
        "#नमस्तेदुनिया",  # Devanagari: the virama and the vowel sign are combining marks
        "@ana\u0301lia@mastodon.example",  # a combining acute in the name
        "#cafe\u0301s",
    ],
)
def test_a_tag_or_mention_with_combining_marks_is_not_cut_at_a_mark(tag: str) -> None:
    for before in range(40, 61):  # the tag at every place across the first part's end
        word = "x" * before + f"({tag})" + "z" * 50
        parts = cut(word, bluesky(60))
        assert "".join(parts) == word
        assert any(tag in p for p in parts), parts


# --- numbering --------------------------------------------------------------------------------


def test_numbered_parts_carry_i_of_n_within_the_limit() -> None:
    text = " ".join(["word"] * 60)
    parts = cut(text, mastodon(50), numbered=True)
    n = len(parts)
    assert [p.rsplit(" ", 1)[1] for p in parts] == [f"{i}/{n}" for i in range(1, n + 1)]
    assert all(mastodon_length(p) <= 50 for p in parts)


def test_numbering_that_needs_another_digit_is_recounted() -> None:
    # 9 parts unnumbered, but " 9/9" pushes the text into a tenth part: " i/10" everywhere.
    text = " ".join(["abcd"] * 90)  # 449 characters
    plain = cut(text, mastodon(50))
    numbered = cut(text, mastodon(50), numbered=True)
    assert len(numbered) >= len(plain)
    n = len(numbered)
    assert all(p.endswith(f" {i}/{n}") for i, p in enumerate(numbered, 1))
    assert all(mastodon_length(p) <= 50 for p in numbered)


# --- explicit parts ---------------------------------------------------------------------------


def test_explicit_parts_split_on_lines_of_three_dashes() -> None:
    text = "First part\n---\nSecond part\nwith two lines\n  ---  \nThird"
    assert explicit_parts(text) == ["First part", "Second part\nwith two lines", "Third"]


def test_dashes_inside_a_line_or_longer_runs_do_not_separate() -> None:
    assert explicit_parts("a --- b\n----\nc") == ["a --- b\n----\nc"]


def test_windows_line_ends_separate_too() -> None:
    assert explicit_parts("one\r\n---\r\ntwo\r\n") == ["one", "two"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("one\n---\n---\ntwo", "part 2 of the thread is empty (after --- number 1)"),
        ("---\none", "part 1 of the thread is empty (before the first ---)"),
        ("one\n---\n   \n", "part 2 of the thread is empty (after --- number 1)"),
    ],
)
def test_an_empty_explicit_part_is_refused(text: str, where: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        explicit_parts(text)
    assert caught.value.message == where


def test_more_than_100_explicit_parts_are_refused() -> None:
    assert len(explicit_parts("\n---\n".join(["x"] * MAX_PARTS))) == MAX_PARTS
    with pytest.raises(InvalidInput, match="101 parts, over the limit of 100"):
        explicit_parts("\n---\n".join(["x"] * 101))


def test_an_explicit_part_over_the_limit_is_refused_naming_part_platform_limit_length() -> None:
    with pytest.raises(InvalidInput) as caught:
        thread_parts(["short", "a" * 501], mastodon(), auto=False, numbered=False)
    assert caught.value.message == "part 2 is 501 characters, over mastodon's limit of 500"
    assert "--auto-thread" in str(caught.value)


def test_explicit_parts_with_auto_thread_cut_only_the_long_ones() -> None:
    long = " ".join(["word"] * 30)
    parts = thread_parts(["intro", long, "outro"], mastodon(50), auto=True, numbered=False)
    assert parts[0] == "intro"
    assert parts[-1] == "outro"
    assert len(parts) == 5


def test_explicit_parts_are_numbered_across_the_thread() -> None:
    parts = thread_parts(["a", "b", "c"], mastodon(), auto=False, numbered=True)
    assert parts == ["a 1/3", "b 2/3", "c 3/3"]
    with pytest.raises(InvalidInput, match="part 2 is 501"):
        thread_parts(["a", "b" * 497, "c"], mastodon(), auto=False, numbered=True)


def test_a_thread_of_more_than_100_parts_is_refused() -> None:
    text = " ".join(["word"] * 1200)
    with pytest.raises(InvalidInput, match="more than 100 parts on mastodon"):
        cut(text, mastodon(50))


# --- properties -------------------------------------------------------------------------------

ATOMS = st.one_of(
    st.sampled_from(
        [
            "word",
            "Wörter",
            "a",
            "end.",
            "really?",
            "“quoted.”",
            URL,
            "https://x.example/p?q=1",
            "@alice@mastodon.example",
            "@bob.bsky.social",
            "#hashtag",
            "nostr:npub1qqqsyqcyq5rqwzqf",
            FAMILY,
            FLAG,
            "e\u0301",
            "\U0001f44b\U0001f3fd",
            "中文句子。",
            "x" * 70,
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
        min_size=1,
        max_size=12,
    ),
)
# No gap at all glues atoms into words longer than a part, to be cut inside.
GAPS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", " \n\n ", "\t", "", ""])


@st.composite
def texts(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(ATOMS, min_size=8, max_size=120))
    out = atoms[0]
    for atom in atoms[1:]:
        out += draw(GAPS) + atom
    return out


PLATFORM_LIMITS = st.sampled_from(
    [mastodon(60), mastodon(120), mastodon(), bluesky(40, 400), bluesky(100, 160), nostr(120)]
)


def tokens(text: str) -> list[str]:
    """The links, mentions and tags of a text, as a reader sees them."""
    return regex.findall(r"https?://\S+|@[\w.@-]+|#\w+|nostr:\w+", text)


def solid_clusters(text: str) -> list[str]:
    return [c for c in regex.findall(r"\X", text) if not c.isspace()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts(), PLATFORM_LIMITS, st.booleans())
@example("a \u0301b " * 40, mastodon(80), False)
@example(" ".join([FAMILY] * 200), bluesky(), True)
@example(FAMILY * 10 + "e\u0301" * 30, nostr(120), False)
@example("a " * 20 + "https://x.example/p?q=1" + "中文句子。" * 3 + "word", bluesky(40, 400), False)
@example("word " * 9 + "@alice@mastodon.example\u0301" + "x" * 70, mastodon(60), False)
def test_properties_of_every_cut(text: str, limits: list[Limit], numbered: bool) -> None:
    text = text.strip()
    assume(text)
    try:
        parts = cut(text, limits, numbered=numbered)
    except InvalidInput as exc:
        # Only a piece no cut may split (one cluster, or a link) longer than a part.
        assert "cannot be split" in exc.message or "more than 100 parts" in exc.message
        return
    assert 1 <= len(parts) <= MAX_PARTS
    # Every part within every limit of its platform (the numbering included).
    for part in parts:
        for limit in limits:
            assert limit.measure(part) <= limit.maximum
    bodies = parts
    if numbered and len(parts) > 1:
        n = len(parts)
        assert all(p.endswith(f" {i}/{n}") for i, p in enumerate(parts, 1))
        bodies = [p[: -len(f" {i}/{n}")] for i, p in enumerate(parts, 1)]
    # Put back together, the parts are the text: only whitespace between them is gone.
    rest = text
    for body in bodies:
        assert body
        assert body == body.strip() or not body[0].isspace() or not body[-1].isspace()
        gap = rest[: rest.index(body)] if body in rest else None
        assert gap is not None and not gap.strip(), (body, rest[:80])
        rest = rest[len(gap) + len(body) :]
    assert not rest.strip()
    # No cut inside a grapheme cluster: the clusters are the text's clusters.
    assert [c for b in bodies for c in solid_clusters(b)] == solid_clusters(text)
    # No cut inside a link, mention or tag: each is whole in some part.
    assert sorted(t for b in bodies for t in tokens(b)) == sorted(tokens(text))
