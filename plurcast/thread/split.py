"""Cutting a text into the parts of a thread, by one platform's own way of counting.

A part ends where a reader pauses: at a paragraph break when that leaves the part at least
half as long as it could be, else at the end of a sentence or a line (the same rule), else
between two words. Only a "word" longer than a whole part (a run of CJK text without spaces,
a wall of emoji) is cut inside, and then only between grapheme clusters and never inside a
link, a mention, a hashtag or a `nostr:` reference. The whitespace at a cut is dropped and
nothing else is changed: the parts, put back together, are the text.

Each platform counts in its own way (Mastodon: a link is 23, `@user@host` is `@user`;
Bluesky: grapheme clusters and UTF-8 bytes; Nostr: bytes), so a text is cut once per platform
with that platform's limits (`registry.limits(cfg, platform, account).text`). `--numbered`
appends ` i/N` to every part of a thread of more than one part, and the suffix counts against
the limit.

With `--thread`, a line holding only `---` separates parts the author chose (`explicit_parts`);
`thread_parts` then cuts those that are too long when `--auto-thread` is given too, and refuses
them otherwise.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import NoReturn

from plurcast.errors import InvalidInput
from plurcast.platforms.registry import Limit
from plurcast.value import Value

MAX_PARTS = 100
SEPARATOR = "---"
# A paragraph or sentence break is taken only if the part keeps this share of the most it
# could hold; a heading followed by a long paragraph must not become a part of its own.
MIN_FILL = 0.5

PARAGRAPH, SENTENCE, WORD = 3, 2, 1

# The end of a sentence before a space: a terminator, then closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…‼⁇⁈⁉][\"'”’»)\]]*\Z")
# Terminators of scripts written without spaces: a sentence may end right after them.
_CLOSING_CJK = frozenset("。！？｡")
# What a cut inside a word must not split: links and other URIs, bare domains, mentions,
# hashtags and cashtags. (A cut between words never can: none of these holds a space.)
# Matched with the regex module, whose \w is Unicode's word characters, combining marks
# included: re's stops a #नमस्ते or a name with an e + U+0301 at the mark.
_PROTECTED = (
    r"[A-Za-z][A-Za-z0-9+.-]*:(?://)?\S+"
    r"|(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?:/\S*)?"
    r"|[@#$][\w.@:-]+"
)
_SEPARATOR_LINE = re.compile(r"^[ \t]*---[ \t]*\r?$", re.MULTILINE)


class _Cut(Value):
    end: int  # where the part before the cut ends
    start: int  # where the next part starts (after the whitespace dropped)
    level: int


def explicit_parts(text: str) -> list[str]:
    """The parts of a `--thread` text: what lies between lines holding only `---`, stripped.

    A part with nothing in it (two separators in a row, or one at the start or the end) is
    refused: it is almost always a mistake, and an empty post cannot be sent.
    """
    pieces = _SEPARATOR_LINE.split(text)
    parts = [piece.strip() for piece in pieces]
    for number, part in enumerate(parts, start=1):
        if not part:
            where = "before the first ---" if number == 1 else f"after --- number {number - 1}"
            raise InvalidInput(
                f"part {number} of the thread is empty ({where})",
                "put text between the --- lines, or remove the extra ---",
            )
    if len(parts) > MAX_PARTS:
        raise InvalidInput(
            f"the thread has {len(parts)} parts, over the limit of {MAX_PARTS}",
            "make it shorter, or post it as more than one thread",
        )
    return parts


def thread_parts(
    chunks: Sequence[str], limits: Sequence[Limit], *, auto: bool, numbered: bool
) -> list[str]:
    """The parts of a thread on one platform: `chunks` (the author's parts, or the whole
    text as one), each cut further by `limits` when `auto`, numbered ` i/N` when `numbered`.

    Without `auto`, a chunk over a limit is refused (InvalidInput naming the part, the
    platform, the limit and the length). More than MAX_PARTS parts are refused either way.
    """
    if not auto:
        total = len(chunks)
        parts = [_label(c, i, total) if numbered else c for i, c in enumerate(chunks, 1)]
        for number, part in enumerate(parts, start=1):
            _refuse_over(part, limits, number, total)
        return parts
    parts = _cut_all(chunks, limits, None)
    if not numbered or len(parts) == 1:
        return parts
    total = len(parts)
    while True:
        labels = _numbering(total)
        parts = _cut_all(chunks, limits, labels)
        if len(parts) <= total:
            # Fewer parts than planned for: shorter labels only make them fit better.
            return [_label(p, i, len(parts)) for i, p in enumerate(parts, 1)]
        total = len(parts)


def _numbering(total: int) -> Callable[[int], str]:
    return lambda index: f" {index}/{total}"


def _label(part: str, index: int, total: int) -> str:
    return part if total == 1 else f"{part} {index}/{total}"


def _refuse_over(part: str, limits: Sequence[Limit], number: int, total: int) -> None:
    for limit in limits:
        size = limit.excess(part)
        if size is None:
            continue
        what = "content" if total == 1 else f"part {number}"
        most = f"{limit.platform}'s limit of {limit.maximum:,}"
        raise InvalidInput(
            f"{what} is {size:,} {limit.unit}, over {most}",
            "shorten it, split it with --- lines and --thread, or add --auto-thread"
            if total > 1
            else f"shorten it, add --auto-thread, or leave {limit.platform} out with -p",
        )


def _cut_all(
    chunks: Sequence[str], limits: Sequence[Limit], labels: Callable[[int], str] | None
) -> list[str]:
    parts: list[str] = []
    for chunk in chunks:
        parts += _Cutter(chunk, limits, labels, first=len(parts) + 1).parts()
    return parts


class _Cutter:
    """Cuts one text greedily: each part as long as its limit allows, ended at the best
    break within reach (see the module docstring)."""

    def __init__(
        self,
        text: str,
        limits: Sequence[Limit],
        labels: Callable[[int], str] | None,
        first: int,
    ) -> None:
        self.text = text
        self.limits = limits
        self.labels = labels
        self.first = first
        import regex  # grapheme clusters (\X); ~20 ms to import, so only when cutting

        spans = [m.span() for m in regex.finditer(r"\X", text)]
        self.starts = [s for s, _ in spans]
        blank = [text[s:e].isspace() for s, e in spans]
        solid = [i for i, b in enumerate(blank) if not b]
        self.begin = spans[solid[0]][0] if solid else 0
        self.finish = spans[solid[-1]][1] if solid else 0
        self._protected: tuple[list[int], list[int]] | None = None
        self.cuts = self._breaks(spans, blank)
        self.ends = [c.end for c in self.cuts]

    def _breaks(self, spans: list[tuple[int, int]], blank: list[bool]) -> list[_Cut]:
        text = self.text
        cuts: list[_Cut] = []
        i = 0
        while i < len(spans):
            start, end = spans[i]
            if blank[i]:
                j = i
                while j + 1 < len(spans) and blank[j + 1]:
                    j += 1
                run_end = spans[j][1]
                if start > self.begin and run_end < self.finish:
                    cuts.append(_Cut(start, run_end, self._level(start, run_end)))
                i = j + 1
                continue
            if (
                text[start:end] in _CLOSING_CJK
                and i + 1 < len(spans)
                and not blank[i + 1]
                and end < self.finish
                and not self._splits_token(end)  # "https://example.com/文。x" is one link
            ):
                cuts.append(_Cut(end, end, SENTENCE))
            i += 1
        return cuts

    def _level(self, start: int, end: int) -> int:
        newlines = self.text.count("\n", start, end)
        if newlines >= 2:
            return PARAGRAPH
        if newlines == 1 or _SENTENCE_END.search(self.text, max(0, start - 8), start):
            return SENTENCE
        return WORD

    def fits(self, part: str, index: int) -> bool:
        if self.labels is not None:
            part += self.labels(index)
        return all(limit.measure(part) <= limit.maximum for limit in self.limits)

    def parts(self) -> list[str]:
        text, parts = self.text, list[str]()
        pos = self.begin
        while pos < self.finish:
            index = self.first + len(parts)
            if len(parts) >= MAX_PARTS:
                raise InvalidInput(
                    f"the thread would have more than {MAX_PARTS} parts on "
                    f"{self.limits[0].platform}",
                    "shorten the text, or post it as more than one thread",
                )
            if self.fits(text[pos : self.finish], index):
                parts.append(text[pos : self.finish])
                break
            end, start = self._next_cut(pos, index)
            parts.append(text[pos:end])
            pos = start
        return parts

    def _next_cut(self, pos: int, index: int) -> tuple[int, int]:
        lo = bisect_right(self.ends, pos)
        best = self._furthest(lo, len(self.cuts), lambda j: self.cuts[j].end, pos, index)
        if best is None:
            return self._inside_word(pos, index, lo)
        span = self.cuts[best].end - pos
        for level in (PARAGRAPH, SENTENCE):
            for j in range(best, lo - 1, -1):
                cut = self.cuts[j]
                if cut.end - pos < MIN_FILL * span:
                    break
                if cut.level >= level:
                    return cut.end, cut.start
        cut = self.cuts[best]
        return cut.end, cut.start

    def _furthest(
        self, lo: int, hi: int, offset: Callable[[int], int], pos: int, index: int
    ) -> int | None:
        """The largest j in [lo, hi) whose part text[pos:offset(j)] fits (fitting shrinks
        as a part grows), or None."""
        found = None
        while lo < hi:
            mid = (lo + hi) // 2
            if self.fits(self.text[pos : offset(mid)], index):
                found, lo = mid, mid + 1
            else:
                hi = mid
        return found

    def _inside_word(self, pos: int, index: int, lo: int) -> tuple[int, int]:
        """A cut inside the word at `pos`, which is longer than a whole part: between
        grapheme clusters, outside links, mentions and tags."""
        word_end = self.cuts[lo].end if lo < len(self.cuts) else self.finish
        first, last = bisect_right(self.starts, pos), bisect_left(self.starts, word_end)
        allowed = [b for b in self.starts[first:last] if not self._splits_token(b)]
        found = self._furthest(0, len(allowed), allowed.__getitem__, pos, index)
        if found is None:
            self._refuse_unbreakable(pos, index, allowed[0] if allowed else word_end)
        return allowed[found], allowed[found]

    def _splits_token(self, offset: int) -> bool:
        """Whether `offset` lies strictly inside a link, mention or tag."""
        if self._protected is None:
            import regex

            spans = [m.span() for m in regex.finditer(_PROTECTED, self.text)]
            self._protected = [s for s, _ in spans], [e for _, e in spans]
        starts, ends = self._protected
        i = bisect_left(starts, offset) - 1  # the last token starting before offset
        return i >= 0 and offset < ends[i]

    def _refuse_unbreakable(self, pos: int, index: int, end: int) -> NoReturn:
        piece = self.text[pos:end]
        shown = piece if len(piece) <= 40 else piece[:39] + "…"
        suffix = self.labels(index) if self.labels is not None else ""
        for limit in self.limits:
            size = limit.excess(piece + suffix)
            if size is not None:
                raise InvalidInput(
                    f'"{shown}" is {size:,} {limit.unit}, over {limit.platform}\'s limit of '
                    f"{limit.maximum:,}, and cannot be split",
                    "shorten it, or leave " + limit.platform + " out with -p",
                )
        raise AssertionError("a piece that fits was refused")  # pragma: no cover
