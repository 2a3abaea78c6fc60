"""Nostr: what a note carries besides its text — images, content warning, label, languages.

- images: uploaded to the account's Blossom servers (`plurcast.platforms.blossom`) while the
  delivery is prepared; each URL goes into the note's content, on a line of its own after the
  text, with a NIP-92 `imeta` tag describing it (`url`, `m` type, `x` sha256, `size`, `dim`
  width×height as shown, `alt`, and a `fallback` per other server that has it). The signed
  note is the stored payload: a retry re-sends it and uploads nothing again;
- a content warning (`--cw`) or a label (`--label`) is a NIP-36 `content-warning` tag, whose
  reason is the warning's text, else the label; a label is also a NIP-32 label in the
  `content-warning` namespace, for clients that filter by label;
- each language is a NIP-32 label: `["L", "ISO-639-1"]`, `["l", "en", "ISO-639-1"]` (the
  language alone, as the namespace defines it; three-letter ones under ISO-639-3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plurcast.media.store import MediaReader

PLATFORM = "nostr"
WARNING_NAMESPACE = "content-warning"


async def attach_images(
    text: str,
    entries: Sequence[dict[str, Any]],
    media: MediaReader,
    *,
    servers: Sequence[str],
    keys: Any,
    timeout: float,
) -> tuple[str, list[list[str]]]:
    """The note's content with the images' URLs, and their `imeta` tags (all uploaded)."""
    from plurcast.media import attach
    from plurcast.platforms import blossom

    lines = [text]
    tags: list[list[str]] = []
    for number, stored in enumerate(entries, start=1):
        entry = attach.for_platform(stored, PLATFORM)
        data = media.read(entry["sha256"])
        uploaded = await blossom.upload(
            servers,
            data,
            mime=entry["mime"],
            digest=entry["sha256"],
            keys=keys,
            name=entry.get("name") or f"image {number}",
            timeout=timeout,
        )
        url, *fallbacks = uploaded.urls
        lines.append(url)
        tag = [
            "imeta",
            f"url {url}",
            f"m {entry['mime']}",
            f"x {entry['sha256']}",
            f"size {entry['size']}",
            f"dim {entry['width']}x{entry['height']}",
        ]
        if entry.get("alt"):
            tag.append(f"alt {entry['alt']}")
        tag += [f"fallback {other}" for other in fallbacks]
        tags.append(tag)
    return "\n".join(lines), tags


def tags(metadata: Mapping[str, Any]) -> list[list[str]]:
    """The tags a post's options give its note (before any image's `imeta`)."""
    found: list[list[str]] = []
    warning, label = metadata.get("cw"), metadata.get("label")
    if warning or label:
        found.append(["content-warning", str(warning or label)])
    if label:
        found += [["L", WARNING_NAMESPACE], ["l", label, WARNING_NAMESPACE]]
    langs = metadata.get("langs")
    return found + _language_labels(langs) if langs else found


def _language_labels(langs: Sequence[str]) -> list[list[str]]:
    """NIP-32 labels for the post's languages (their module only for notes that name one)."""
    from plurcast import languages

    namespaces: dict[str, list[str]] = {}
    for tag in langs:
        values = namespaces.setdefault(languages.namespace(tag), [])
        if languages.primary(tag) not in values:
            values.append(languages.primary(tag))
    found: list[list[str]] = []
    for namespace, values in namespaces.items():
        found.append(["L", namespace])
        found += [["l", value, namespace] for value in values]
    return found
