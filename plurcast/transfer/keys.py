"""What makes an import row the same row when it is imported again: its key."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from plurcast.config import Config
from plurcast.transfer.fields import Entry


def row_key(entry: Entry, cfg: Config) -> str:
    """The row's `key`, else a hash of what it says (before anything is resolved, so the
    same row is the same key tomorrow — `tomorrow 9am` stays `tomorrow 9am`)."""
    if entry.key is not None:
        return entry.key
    when = "draft" if entry.draft else " ".join((entry.schedule or "").lower().split())
    material: list[Any] = [
        entry.content.strip(),
        when,
        entry.tz or cfg.timezone.key,
        sorted({p.lower() for p in entry.platforms}),
        entry.account or "",
        [entry.thread, entry.auto_thread, entry.numbered],
        list(entry.variants),
        entry.reply_to or "",
    ]
    extras = _extras_material(entry)
    if extras:  # only then: the keys of rows without them stay what they were
        material.append(extras)
    recurring = _recurring_material(entry)
    if recurring:  # the same: a row that does not recur keeps its key
        material.append(recurring)
    digest = hashlib.sha256(json.dumps(material, ensure_ascii=False).encode()).hexdigest()
    return "sha256:" + digest[:32]


def _extras_material(entry: Entry) -> dict[str, Any]:
    """What a row says besides its text and time, for its key: what it sets, nothing else."""
    values: dict[str, Any] = {
        "images": list(entry.images),
        "alt": list(entry.alts),
        "cw": entry.cw,
        "label": entry.label,
        "lang": list(entry.langs),
        "no_card": entry.no_card,
        "fit": entry.fit,
        "keep_metadata": entry.keep_metadata,
    }
    return {name: value for name, value in values.items() if value not in (None, False, [])}


def _recurring_material(entry: Entry) -> dict[str, Any]:
    """A recurring row's rule and end, as written, for its key."""
    values: dict[str, Any] = {
        "cron": " ".join((entry.cron or "").split()),
        "every": " ".join((entry.every or "").lower().split()),
        "until": " ".join((entry.until or "").lower().split()),
        "count": entry.count,
        "misfire": entry.misfire,
        "grace": " ".join((entry.grace or "").lower().split()),
    }
    return {name: value for name, value in values.items() if value not in (None, "")}
