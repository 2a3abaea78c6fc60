"""Bluesky: what a post record carries besides its text — images, a link card, labels, languages.

All of it is made while the delivery is prepared and goes into the stored record, so every
later attempt sends the same record (G2):
- images: each uploaded with `com.atproto.repo.uploadBlob`; the record's
  `app.bsky.embed.images` names the blobs, with the alt text (the lexicon requires the field,
  empty when there is none) and an `aspectRatio` from the picture's real dimensions (after its
  EXIF orientation), so the app shows it uncropped before it has loaded;
- a link card: when the text has a link and the post no images (and not `--no-card`), the
  page's Open Graph title, description and image (`plurcast.linkcards`), embedded as
  `app.bsky.embed.external` with the image uploaded as its thumbnail. A page that cannot give
  a card leaves the post without one; the reason is noted in the delivery's history;
- `--label`: self-labels (`com.atproto.label.defs#selfLabels`);
- `--lang`: `langs`, up to three.

A blob that no record refers to is deleted by the PDS after a while; should a retry find its
images gone (`BlobNotFound`), the same bytes are uploaded again — a blob's CID is the hash of
its bytes, so the stored record stays as it is. The payload keeps which stored image each blob
came from for that (`SOURCES`, taken out before the request is sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from plurcast.errors import RuntimeFailure
from plurcast.media import attach

if TYPE_CHECKING:
    from plurcast.media.store import MediaReader

PLATFORM = "bluesky"
UPLOAD_BLOB = "com.atproto.repo.uploadBlob"
IMAGES = "app.bsky.embed.images"
EXTERNAL = "app.bsky.embed.external"
SELF_LABELS = "com.atproto.label.defs#selfLabels"
LINK = "app.bsky.richtext.facet#link"
# The payload's key (beside the putRecord body) for the images its blobs were uploaded from.
SOURCES = "plurcast_blobs"
# What the PDS answers a record naming a blob it does not have.
BLOB_NOT_FOUND = "BlobNotFound"

Upload = Callable[[bytes, str], Awaitable[dict[str, Any]]]  # (data, mime) → the blob ref


def record_options(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The record's self-labels and languages from the post's options."""
    options: dict[str, Any] = {}
    if metadata.get("label"):
        options["labels"] = {"$type": SELF_LABELS, "values": [{"val": metadata["label"]}]}
    if metadata.get("langs"):
        options["langs"] = list(metadata["langs"])
    return options


async def images_embed(
    upload: Upload, entries: Sequence[dict[str, Any]], media: MediaReader
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The images embed, every image uploaded; and where each blob came from (SOURCES)."""
    images: list[dict[str, Any]] = []
    sources: list[dict[str, str]] = []
    for stored in entries:
        entry = attach.for_platform(stored, PLATFORM)
        blob = await upload(media.read(entry["sha256"]), entry["mime"])
        images.append(
            {
                "alt": entry.get("alt") or "",
                "image": blob,
                "aspectRatio": {"width": int(entry["width"]), "height": int(entry["height"])},
            }
        )
        sources.append({"sha256": entry["sha256"], "mime": entry["mime"]})
    return {"$type": IMAGES, "images": images}, sources


def first_link(facets: Sequence[dict[str, Any]]) -> str | None:
    """The first link of the text, as its facet has it (a bare `example.com` included)."""
    for facet in facets:
        for feature in facet.get("features", []):
            if feature.get("$type") == LINK:
                return str(feature["uri"])
    return None


async def card_embed(
    upload: Upload, url: str, *, allow_private: bool, notes: dict[str, str] | None
) -> dict[str, Any] | None:
    """The link card of `url`, or None (why goes into `notes`, for the history)."""
    notes = {} if notes is None else notes
    import asyncio

    from plurcast import linkcards

    try:
        card = await asyncio.to_thread(linkcards.fetch_card, url, allow_private=allow_private)
    except linkcards.CardError as exc:
        notes["card"] = f"posted without a link card: {exc}"
        return None
    external: dict[str, Any] = {
        "uri": card.url,
        "title": card.title,
        "description": card.description,
    }
    if card.image is not None and card.image_mime is not None:
        external["thumb"] = await upload(card.image, card.image_mime)
    if card.problems:
        notes["card"] = "; ".join(card.problems)
    return {"$type": EXTERNAL, "external": external}


async def reupload(upload: Upload, sources: Sequence[dict[str, str]], media: MediaReader) -> None:
    """Upload the images of a stored record again (their blobs were deleted meanwhile)."""
    for source in sources:
        await upload(media.read(source["sha256"]), source["mime"])


def blob_of(answer: Any) -> dict[str, Any]:
    """The blob ref from an uploadBlob answer's JSON."""
    content = answer.content
    blob = content.get("blob") if isinstance(content, dict) else None
    if not isinstance(blob, dict) or "ref" not in blob:
        raise RuntimeFailure(f"the PDS answered uploadBlob without a blob: {content!r:.200}")
    return blob
