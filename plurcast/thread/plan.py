"""From what plur-post was given to the posts of a thread: each part's text on each target.

A thread is a chain of posts; post i has a delivery on each (platform, account) that has an
i-th part there. Each target's text (the post's, or its `--variant`) is cut into parts by
that platform's own limits, so Nostr may carry in one note what Bluesky needs four posts
for: the thread then has four posts, and the last three go to Bluesky alone. A post's
`content` is the first target's part without a variant; a delivery whose part differs keeps
its own text.

`insert` writes the posts with their thread links: each delivery after the first part's
answers the previous part's delivery on the same target — the link the engine's claim
follows (G6).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from plurcast import content
from plurcast.errors import InvalidInput
from plurcast.platforms import registry
from plurcast.store import posts as store
from plurcast.store.base import Database
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.platforms.registry import Limit

Target = tuple[str, str]  # (platform, account)
LimitsOf = Callable[[str, str], Sequence["Limit"]]


class Compose(Value):
    """How plur-post was asked to shape the text: --thread, --auto-thread, --numbered and
    --variant PLATFORM=TEXT (already read from its @FILE)."""

    thread: bool = False
    auto: bool = False
    numbered: bool = False
    variants: Mapping[str, str] = MappingProxyType({})

    @property
    def shaped(self) -> bool:
        """Whether the text is anything but one post with the same text everywhere."""
        return self.thread or self.auto or self.numbered or bool(self.variants)

    @classmethod
    def from_args(
        cls, thread: bool, auto: bool, numbered: bool, variants: Sequence[str]
    ) -> Compose:
        """From plur-post's options; `variants` as given to --variant (InvalidInput, exit 3)."""
        if numbered and not (thread or auto):
            raise InvalidInput(
                "--numbered goes with --thread or --auto-thread", "add one, or drop --numbered"
            )
        return cls(thread, auto, numbered, read_variants(variants))


def read_variants(values: Sequence[str]) -> dict[str, str]:
    """`--variant PLATFORM=TEXT` (or `PLATFORM=@FILE`; `@@` starts the text with @) values,
    by platform. The texts are checked against their platform when the post is."""
    variants: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        name = name.strip().lower()
        if not sep or not name:
            raise InvalidInput(
                f'--variant "{value}" is not PLATFORM=TEXT', 'e.g. --variant bluesky="Short text"'
            )
        if name not in registry.NAMES:
            raise InvalidInput(
                f'--variant for an unknown platform "{name}"',
                f"choose from {', '.join(registry.NAMES)}",
            )
        if name in variants:
            raise InvalidInput(f"--variant {name} is given twice", "give one text per platform")
        variants[name] = _variant_text(name, text)
    return variants


def _variant_text(platform: str, text: str) -> str:
    if text.startswith("@@"):
        return text[1:]
    if not text.startswith("@"):
        return text
    path = Path(text[1:]).expanduser()
    try:
        with path.open("rb") as file:
            raw = file.read(content.MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(
            f"--variant {platform}=@{text[1:]}: cannot read it ({exc.strerror})",
            "give a readable file, or write @@ to start the text itself with @",
        ) from None
    if len(raw) > content.MAX_BYTES:
        raise InvalidInput(f"{path} is over the limit of {content.MAX_BYTES:,} bytes", "shorten it")
    return content.decode(raw)


Part = dict[Target, str]  # one post of the thread: its text on each target that has it


def plan(text: str, targets: Sequence[Target], compose: Compose, limits_of: LimitsOf) -> list[Part]:
    """Each post of the thread, in order, with its text per target; every text within its
    target's limits (InvalidInput, exit 3, naming part, platform, limit and length)."""
    from plurcast.thread.split import MAX_PARTS, explicit_parts, thread_parts

    platforms = {platform for platform, _ in targets}
    for name in compose.variants:
        if name not in platforms:
            raise InvalidInput(
                f"--variant {name}=… is for a platform this post does not go to",
                f"add -p {name}, or drop the variant",
            )
    per_target: dict[Target, list[str]] = {}
    for target in targets:
        platform, account = target
        own = compose.variants.get(platform)
        body = text if own is None else content.normalise(own)
        chunks = explicit_parts(body) if compose.thread else [body]
        per_target[target] = thread_parts(
            chunks, limits_of(platform, account), auto=compose.auto, numbered=compose.numbered
        )
    count = max(len(parts) for parts in per_target.values())
    if count > MAX_PARTS:  # explicit parts cut further can pass the limit
        raise InvalidInput(
            f"the thread would have {count} parts, over the limit of {MAX_PARTS}",
            "shorten it, or post it as more than one thread",
        )
    return [
        {t: parts[i] for t, parts in per_target.items() if i < len(parts)} for i in range(count)
    ]


def to_json(parts: Sequence[Part], variants: Collection[str]) -> dict[str, Any]:
    """Parts as a recurring schedule keeps them (JSON has no tuple keys)."""
    return {
        "parts": [[[p, a, text] for (p, a), text in part.items()] for part in parts],
        "variants": sorted(variants),
    }


def from_json(data: Mapping[str, Any]) -> tuple[list[Part], list[str]]:
    parts = [{(p, a): text for p, a, text in part} for part in data["parts"]]
    return parts, list(data["variants"])


def canonical(part: Part, targets: Sequence[Target], variants: Collection[str]) -> str:
    """The text a post of the thread shows as its own: the first target's without a variant."""
    present = [t for t in targets if t in part]
    plain = [t for t in present if t[0] not in variants]
    return part[(plain or present)[0]]


class Inserted(Value):
    post_ids: list[str]
    deliveries: list[dict[Target, int]]  # per post: its delivery on each target


def insert(
    conn: Database,
    parts: Sequence[Part],
    base: store.NewPost,
    *,
    variants: Collection[str],
    first_parents: Mapping[Target, int] | None = None,
) -> Inserted:
    """Write the thread's posts, `base` giving what they share (time, zone, metadata …), in
    the caller's transaction; `variants` names the platforms with a text of their own.
    `first_parents` links the first part to posts it answers (`--reply-to` one of ours).
    Only the first part is its schedule's occurrence; the others carry the schedule only."""
    targets = list(base.targets)
    post_ids = [base.id if i == 0 else str(uuid.uuid4()) for i in range(len(parts))]
    thread_id = base.id if len(parts) > 1 else None
    inserted: list[dict[Target, int]] = []
    for i, part in enumerate(parts):
        own = [t for t in targets if t in part]
        text = canonical(part, targets, variants)
        parents = dict(first_parents or {}) if i == 0 else dict(inserted[-1])
        record = base._replace(
            id=post_ids[i],
            content=text,
            targets=own,
            metadata=base.metadata if i == 0 else _later_part_metadata(base.metadata),
            media=base.media if i == 0 else (),
            occurrence_at_ms=base.occurrence_at_ms if i == 0 else None,
            thread_id=thread_id,
            thread_part=i + 1 if thread_id else None,
            texts={t: part[t] for t in own if part[t] != text},
            parents={t: parents[t] for t in own if t in parents},
        )
        inserted.append(store.insert_post(conn, record))
    return Inserted(post_ids, inserted)


# What belongs to a thread's first part alone: what it replies to (the later parts answer
# the part before them) and its images (they go with the text they were given with).
FIRST_PART_ONLY = ("reply_to", "images")


def _later_part_metadata(metadata: str) -> str:
    import json

    data = json.loads(metadata)
    for key in FIRST_PART_ONLY:
        data.pop(key, None)
    return json.dumps(data, ensure_ascii=False)
