"""What one row of an import file may say, and its checked, typed form.

Fields are named after plur-post's long options (`schedule`, `tz`, `platforms`, `account`,
`cron`, `every`, `until`, `count`, `misfire`, `grace`, `draft`, `visibility`, `nostr_pow`,
`21e8`, `thread`, `auto_thread`, `numbered`, `variant`, `reply_to`, `images`, `alt`, `fit`,
`keep_metadata`, `cw`, `label`, `lang`, `no_card`) plus `content` and `key` — and two that
plur-export writes for a queue that is behind: `overdue` (its time is past and it was not
sent yet: it is queued due now, at that time) and `from_schedule` (the key of the
recurring row that made the post). Names are read
without regard to case, `-` or spaces (`Nostr-Pow` is `nostr_pow`), and a few spreadsheet
spellings are understood (Buffer's `Text` and `Posting Time`, `platform`). Anything else is
refused by name — never silently dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# In the order plur-export writes them: these always, the others when an entry uses them.
ALWAYS_WRITTEN = ("key", "content", "schedule", "tz", "platforms", "account")
RECURRING = ("cron", "every", "until", "count", "misfire", "grace")
FIELDS = (
    *ALWAYS_WRITTEN,
    *RECURRING,
    "draft",
    "overdue",
    "from_schedule",
    "visibility",
    "nostr_pow",
    "21e8",
    "thread",
    "auto_thread",
    "numbered",
    "variant",
    "reply_to",
    "images",
    "alt",
    "fit",
    "keep_metadata",
    "cw",
    "label",
    "lang",
    "no_card",
)
ALIASES = {
    "platform": "platforms",
    "text": "content",
    "posting_time": "schedule",
    "variants": "variant",
    "image": "images",
    "alts": "alt",
    "alt_text": "alt",
    "langs": "lang",
    "language": "lang",
    "content_warning": "cw",
}
# What a row cannot carry: refused with the reason.
NOT_YET = {
    "image_url": "images by URL",
}
VISIBILITIES = ("public", "unlisted", "private", "direct")
MAX_KEY_CHARS = 200
MAX_POW = 64
_TRUE = ("true", "yes", "1", "y", "on")
_FALSE = ("false", "no", "0", "n", "off", "")


class FieldError(ValueError):
    """A row that cannot be read as written; the message says which field and why."""


def field_name(raw: str) -> str:
    """The field a column or front-matter key names, or FieldError."""
    name = "_".join(raw.strip().lower().replace("-", " ").split())
    name = ALIASES.get(name, name)
    if name in FIELDS:
        return name
    if name in NOT_YET:
        raise FieldError(
            f'"{raw}": {NOT_YET[name]} cannot be imported by this version of plurcast',
            "leave the column out (the posts would go out without them)",
        )
    shown = raw if raw.strip() else "(an empty name)"
    raise FieldError(f'"{shown}" is not a field', f"use {', '.join(FIELDS)}")


@dataclass(frozen=True)
class Entry:
    """One post as a file describes it, before the queue's rules have looked at it."""

    where: str  # "line 3", "posts/launch.md:1": what error messages point at
    content: str
    line: int = field(default=0, compare=False)  # where it starts in its file
    key: str | None = None
    schedule: str | None = None
    tz: str | None = None
    platforms: tuple[str, ...] = ()
    account: str | None = None
    cron: str | None = None  # cron or every: a recurring schedule, `schedule` its start
    every: str | None = None
    until: str | None = None
    count: int | None = None
    misfire: str | None = None  # None: latest
    grace: str | None = None
    draft: bool = False
    overdue: bool = False  # `schedule` is past, known to be: queued due now, at that time
    from_schedule: str | None = None  # the key of the recurring row (schedule) that made it
    visibility: str | None = None
    nostr_pow: int | None = None
    pow_21e8: bool = False
    thread: bool = False  # the content's `---` lines separate the parts (--thread)
    auto_thread: bool = False
    numbered: bool = False
    variants: tuple[tuple[str, str], ...] = ()  # (platform, its own text), by platform
    reply_to: str | None = None
    images: tuple[str, ...] = ()  # paths as written (relative: to the import file's folder)
    alts: tuple[str, ...] = ()  # the alt text of each image, in order ("" for none)
    fit: bool | None = None  # None: [media] fit
    keep_metadata: bool = False
    cw: str | None = None
    label: str | None = None
    langs: tuple[str, ...] = ()  # () : [defaults] language
    no_card: bool = False


def entry(where: str, values: Mapping[str, Any], line: int = 0) -> Entry:
    """Check each field's type and shape (not yet the queue's rules) → an Entry."""
    fields: dict[str, Any] = {}
    for raw_name, value in values.items():
        name = field_name(raw_name)
        if name in fields:
            raise FieldError(f'"{raw_name}" is given twice', "keep one of them")
        fields[name] = value
    content = fields.get("content")
    thread = fields.get("thread")
    if isinstance(thread, list):  # the parts themselves, in JSON or front matter
        if content is not None:
            raise FieldError("content and a list of thread parts", "give one of them")
        if not thread or not all(isinstance(part, str) for part in thread):
            raise FieldError("thread must be true/false or a list of texts")
        content, fields["thread"] = "\n---\n".join(p.strip() for p in thread), True
    if not isinstance(content, str):
        raise FieldError(
            "no content" if content is None else "content must be text",
            "every post needs its text in the content field",
        )
    if "nostr_pow" not in fields and _flag(fields, "21e8"):
        raise FieldError("21e8 requires nostr_pow", "give nostr_pow too")
    images, alts = _images(fields.get("images"), fields.get("alt"))
    return Entry(
        where=where,
        content=content,
        line=line,
        key=_key(fields.get("key"), "key"),
        schedule=_text(fields, "schedule"),
        tz=_text(fields, "tz"),
        platforms=_platforms(fields.get("platforms")),
        account=_text(fields, "account"),
        cron=_text(fields, "cron"),
        every=_text(fields, "every"),
        until=_text(fields, "until"),
        count=_count(fields.get("count")),
        misfire=_lower(_text(fields, "misfire")),  # its policies: schedules.check_new
        grace=_text(fields, "grace"),
        draft=_flag(fields, "draft"),
        overdue=_flag(fields, "overdue"),
        from_schedule=_key(fields.get("from_schedule"), "from_schedule"),
        visibility=_visibility(_text(fields, "visibility")),
        nostr_pow=_pow(fields.get("nostr_pow")),
        pow_21e8=_flag(fields, "21e8"),
        thread=_flag(fields, "thread"),
        auto_thread=_flag(fields, "auto_thread"),
        numbered=_flag(fields, "numbered"),
        variants=_variants(fields.get("variant")),
        reply_to=_text(fields, "reply_to"),
        images=images,
        alts=alts,
        fit=_flag(fields, "fit") if fields.get("fit") not in (None, "") else None,
        keep_metadata=_flag(fields, "keep_metadata"),
        cw=_text(fields, "cw"),
        label=_label(_text(fields, "label")),
        langs=_texts(fields.get("lang"), "lang", split=","),
        no_card=_flag(fields, "no_card"),
    )


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name} must be text, not {_kind(value)}")
    return value.strip() or None


def _key(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldError(f"{name} must be text, not {_kind(value)}")
    key = str(value).strip()
    if len(key) > MAX_KEY_CHARS:
        raise FieldError(f"{name} is longer than {MAX_KEY_CHARS} characters", "shorten it")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in key):
        raise FieldError(f"{name} contains control characters", "use letters, digits and -_.:")
    return key or None


def _platforms(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise FieldError(
            f"platforms must be a list of names, not {_kind(value)}",
            'e.g. ["nostr", "mastodon"], or "nostr,mastodon" in a CSV cell',
        )
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def _flag(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):  # JSON written by hand: "numbered": 1
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise FieldError(f"{name} must be true or false, not {value!r}")


def _variants(value: Any) -> tuple[tuple[str, str], ...]:
    """--variant PLATFORM=TEXT as a table ({"bluesky": "…"}), a list of "PLATFORM=TEXT", or
    in a CSV cell one per line, or the JSON of a table (what plur-export writes there)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str) and value.lstrip().startswith("{"):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise FieldError("variant is not a JSON table", 'e.g. {"bluesky": "Short"}') from None
    if isinstance(value, str):
        value = value.splitlines()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        pairs = [v.partition("=") for v in value if v.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise FieldError("variant must be PLATFORM=TEXT", 'e.g. "bluesky=Short text"')
        value = {name.strip().lower(): text for name, _, text in pairs}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FieldError(
            f"variant must be a table of platform: text, not {_kind(value)}",
            'e.g. {"bluesky": "Short text"}',
        )
    return tuple(sorted((k.strip().lower(), v) for k, v in value.items()))


def _texts(value: Any, name: str, *, split: str | None = None) -> tuple[str, ...]:
    """A list of texts: a list, or a cell — the JSON of a list (what plur-export writes in a
    CSV cell), else the cell cut at `split` (None: the whole cell is one text)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str) and value.lstrip().startswith("["):
        import json

        try:
            listed = json.loads(value)
        except ValueError:
            listed = None
        if isinstance(listed, list):
            value = listed
    if isinstance(value, str):
        items = value.split(split) if split else [value]
        return tuple(item.strip() for item in items if item.strip()) if split else (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FieldError(f"{name} must be a list of texts, not {_kind(value)}")
    return tuple(value)


def _images(images: Any, alts: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`images` (paths: a list, one per line in a cell, or a list of {path, alt} tables) and
    `alt` (each image's alt text, in order) → (paths, alt texts), as plur-post's --image and
    --alt. An alt text needs its image."""
    paths: list[str] = []
    texts: list[str] = []
    if isinstance(images, list) and any(isinstance(i, dict) for i in images):
        if alts not in (None, "", []):
            raise FieldError("alt beside images that name their own alt", "give one of them")
        for item in images:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise FieldError("each image must be a path, or a table with a path and an alt")
            alt = item.get("alt", "")
            if not isinstance(alt, str) or set(item) - {"path", "alt"}:
                raise FieldError("an image table has a path and an alt (text), nothing else")
            paths.append(item["path"])
            texts.append(alt)
    else:
        paths = [p.strip() for p in _texts(images, "images", split="\n")]
        texts = list(_texts(alts, "alt"))
    if any(not p for p in paths):
        raise FieldError("an image with an empty path", "give each image's file")
    if len(texts) > len(paths):
        raise FieldError(
            f"{len(texts)} alt text{'s' if len(texts) != 1 else ''} for {len(paths)} "
            f"image{'s' if len(paths) != 1 else ''}",
            "give each image at most one alt text, in the order of images",
        )
    if not paths:
        return (), ()
    return tuple(paths), tuple(texts + [""] * (len(paths) - len(texts)))


def _label(value: str | None) -> str | None:
    from plurcast.platforms.registry import LABELS

    if value is not None and value.lower() not in LABELS:
        raise FieldError(f'unknown label "{value}"', f"use {', '.join(LABELS)}")
    return None if value is None else value.lower()


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _visibility(value: str | None) -> str | None:
    if value is not None and value.lower() not in VISIBILITIES:
        raise FieldError(f'unknown visibility "{value}"', f"use {', '.join(VISIBILITIES)}")
    return None if value is None else value.lower()


def _count(value: Any) -> int | None:
    """How many posts a recurring schedule makes (its range is checked as --count's)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(f"count must be a whole number, not {value!r}", "e.g. 10")
    return value


def _pow(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POW:
        raise FieldError(
            f"nostr_pow must be a whole number from 0 to {MAX_POW}, not {value!r}",
            "20-25 takes a few seconds; 0 means none",
        )
    return value


def _kind(value: Any) -> str:
    return {
        list: "a list",
        dict: "a table",
        bool: "true/false",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)
