"""What a post's entry and a recurring schedule's entry in plur-export write alike: the
targets and what the metadata says (`shared`), the parts' texts joined as --thread reads
them (`texts`), and times in a zone as ISO 8601 with the offset (`iso`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from plurcast.config import DEFAULT_ACCOUNT
from plurcast.errors import InvalidInput
from plurcast.platforms import nostr_pow

# What an entry carries; anything else in a post's metadata cannot be written yet.
WRITTEN = {
    "visibility",
    nostr_pow.METADATA_KEY,
    "reply_to",
    "images",
    "cw",
    "label",
    "langs",
    "card",
}


def shared(
    what: str,
    targets: Sequence[tuple[str, str]],
    metadata: Mapping[str, Any],
    written: set[str],
    left_out: list[str],
) -> dict[str, Any]:
    """The fields a post and a schedule write alike: targets, and what the metadata says."""
    accounts = {account for _, account in targets}
    account = accounts.pop() if len(accounts) == 1 else None
    wanted_pow = nostr_pow.requested(metadata)
    for extra in sorted(set(metadata) - written):
        left_out.append(f"{what}: its {extra} cannot be exported by this version")
    langs = metadata.get("langs") or ()
    return {
        "platforms": tuple(dict.fromkeys(p for p, _ in targets)),
        "account": None if account == DEFAULT_ACCOUNT else account,
        "visibility": metadata.get("visibility"),
        "nostr_pow": wanted_pow.difficulty if wanted_pow else None,
        "pow_21e8": bool(wanted_pow and wanted_pow.pattern_21e8),
        "cw": metadata.get("cw"),
        "label": metadata.get("label"),
        "langs": tuple(str(lang) for lang in langs),
        "no_card": metadata.get("card") is False,
    }


def iso(ms: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).isoformat()


def content_and_variants(
    per_target: Mapping[tuple[str, str], list[str]],
    targets: Sequence[tuple[str, str]],
    plain: str,
    what: str,
    left_out: list[str],
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The content and the variants that make these parts again: each target's parts
    (its own text where it has one) joined by `---` lines, as --thread reads them; the
    first target's are the content, any other platform's that differ a variant."""
    threaded = any(len(texts) > 1 for texts in per_target.values())
    if threaded and any(_cut(t) for texts in per_target.values() for t in texts):
        left_out.append(f"{what}: a part has a line of --- in it, where plur-import will cut")
    lists = [per_target.get(t, [plain]) for t in targets]
    variants = {
        platform: "\n---\n".join(texts)
        for (platform, _), texts in zip(targets, lists, strict=True)
        if texts != lists[0]
    }
    return "\n---\n".join(lists[0]) if lists else plain, tuple(sorted(variants.items()))


def _cut(text: str) -> bool:
    """Whether --thread would cut this part's own text into more than one."""
    from plurcast.thread.split import explicit_parts

    try:
        return len(explicit_parts(text)) > 1
    except InvalidInput:
        return True
