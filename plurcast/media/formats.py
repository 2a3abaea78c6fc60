"""The image types a post can carry, recognised by their content, never by the file name."""

from __future__ import annotations

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
WEBP = "image/webp"
MIME_TYPES = (JPEG, PNG, GIF, WEBP)
EXTENSIONS = {JPEG: "jpg", PNG: "png", GIF: "gif", WEBP: "webp"}
# How many leading bytes `sniff` needs.
SNIFF_BYTES = 12


def sniff(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes, or None when it is none of ours."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def describe(head: bytes) -> str:
    """What a file that is not an image looks like, for the error message."""
    known = {
        b"%PDF": "a PDF document",
        b"PK\x03\x04": "a ZIP archive (or an office document)",
        b"\x00\x00\x00": "a video or HEIC photo",
        b"II*\x00": "a TIFF image",
        b"MM\x00*": "a TIFF image",
        b"BM": "a BMP image",
        b"<svg": "an SVG drawing",
        b"<?xml": "an XML file",
    }
    for magic, name in known.items():
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return "a video or HEIC photo"
    return "not an image"
