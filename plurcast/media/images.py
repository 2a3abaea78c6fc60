"""Decoding images with Pillow: is the file whole, how big is the picture, and re-encoding it
to the largest file that fits under a platform's byte limit (`--fit`).

Pillow costs ~25 ms to import and is imported here only, and this module only when a post
has an image: a text post never loads it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plurcast.media import clean, formats
from plurcast.value import Value

if TYPE_CHECKING:
    from PIL import Image

# A decoded picture this big would take gigabytes of memory (a "decompression bomb");
# no platform shows more than a few megapixels anyway.
MAX_PIXELS = 100_000_000
# Lossy re-encoding goes no lower than this quality before the picture is made smaller.
MIN_QUALITY = 50
MAX_QUALITY = 95
# Scaled pictures keep at least this many pixels on their longer side.
MIN_SIDE = 64
# Pillow's names for our formats.
_PIL_FORMATS = {
    formats.JPEG: "JPEG",
    formats.PNG: "PNG",
    formats.GIF: "GIF",
    formats.WEBP: "WEBP",
}
# Orientations 5–8 turn the picture by a quarter: width and height swap on screen.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class Unreadable(ValueError):
    """The file is not a whole image of its type; the message says what is wrong."""


class Picture(Value):
    mime: str
    width: int  # as shown, after the EXIF orientation is applied
    height: int
    frames: int  # 1, or the number of frames of an animation


def _pil() -> Any:
    from PIL import Image, ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def inspect(data: bytes) -> Picture:
    """Decode every frame of `data` (so a truncated file is found now) and measure it.

    Raises Unreadable for anything that is not a whole JPEG, PNG, GIF or WebP image.
    """
    import warnings

    mime = formats.sniff(data[: formats.SNIFF_BYTES])
    if mime is None:
        raise Unreadable(f"it is {formats.describe(data[:8])}")
    pil = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            with pil.open(io.BytesIO(data)) as img:
                if img.format != _PIL_FORMATS[mime]:
                    raise Unreadable(f"it starts like {mime} but decodes as {img.format}")
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise Unreadable(
                        f"its picture is {width}×{height} pixels, over {MAX_PIXELS:,} in all"
                    )
                frames = int(getattr(img, "n_frames", 1))
                for frame in range(frames):
                    img.seek(frame)
                    img.load()
    except Unreadable:
        raise
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise Unreadable(f"its picture is over {MAX_PIXELS:,} pixels") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError …
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower() or isinstance(exc, EOFError):
            raise Unreadable("it is truncated (the file ends before the picture does)") from None
        raise Unreadable(f"it cannot be decoded ({reason})") from None
    try:
        clean.check(data, mime)
    except clean.Damaged as exc:
        raise Unreadable(f"it is truncated or damaged ({exc})") from None
    if clean.orientation(data, mime) in _QUARTER_TURNS:
        width, height = height, width
    return Picture(mime, width, height, frames)


def fit(data: bytes, limit: int, *, keep_metadata: bool = False) -> bytes:
    """The largest re-encoding of `data`, in its own format, that is at most `limit` bytes.

    Lossy formats (JPEG, still WebP) first lower the quality, down to MIN_QUALITY; then,
    as for PNG and GIF, the picture is made smaller, keeping its proportions, to the
    largest size that fits. The orientation is applied to the pixels. Metadata is left
    out unless `keep_metadata`. Raises Unreadable when even a tiny picture is too big.
    """
    pil = _pil()
    from PIL import ImageOps

    with pil.open(io.BytesIO(data)) as original:
        mime = formats.sniff(data[: formats.SNIFF_BYTES]) or formats.JPEG
        animated = int(getattr(original, "n_frames", 1)) > 1
        options: dict[str, Any] = {}
        if original.info.get("icc_profile"):
            options["icc_profile"] = original.info["icc_profile"]
        if keep_metadata and mime != formats.GIF:
            exif = original.getexif()
            exif[clean.ORIENTATION_TAG] = 1  # the pixels are turned instead
            options["exif"] = exif.tobytes()
        if animated:
            frames = [ImageOps.exif_transpose(f.copy()) for f in _frames(original)]
            options |= _animation_options(original, mime)
        else:
            frames = [ImageOps.exif_transpose(original.copy())]
    encode = _encoder(mime, frames, options)
    lossy = mime in (formats.JPEG, formats.WEBP) and not animated
    width, height = frames[0].size
    full = max(width, height)
    if lossy:
        quality = _largest(MIN_QUALITY, MAX_QUALITY, lambda q: len(encode(full, q)) <= limit)
        if quality is not None:
            return _finish(encode(full, quality), mime, keep_metadata)
    quality = 85 if lossy else 0
    side = _largest(min(MIN_SIDE, full), full, lambda s: len(encode(s, quality)) <= limit)
    if side is None:
        raise Unreadable(f"it does not fit in {limit:,} bytes even at {MIN_SIDE} pixels wide")
    return _finish(encode(side, quality), mime, keep_metadata)


def _finish(data: bytes, mime: str, keep_metadata: bool) -> bytes:
    return data if keep_metadata else clean.strip(data, mime)


def _frames(img: Image.Image) -> list[Image.Image]:
    from PIL import ImageSequence

    return [frame.copy() for frame in ImageSequence.Iterator(img)]


def _animation_options(img: Image.Image, mime: str) -> dict[str, Any]:
    options: dict[str, Any] = {"save_all": True, "loop": img.info.get("loop", 0)}
    durations = []
    for frame in range(int(getattr(img, "n_frames", 1))):
        img.seek(frame)
        durations.append(img.info.get("duration", 100))
    options["duration"] = durations
    if mime == formats.GIF:
        options["disposal"] = 2
    return options


def _encoder(
    mime: str, frames: list[Image.Image], options: dict[str, Any]
) -> Callable[[int, int], bytes]:
    """encode(longest side in pixels, quality) → bytes, remembering what it already made."""
    from PIL import Image as PILImage

    made: dict[tuple[int, int], bytes] = {}
    kind = _PIL_FORMATS[mime]

    def encode(side: int, quality: int) -> bytes:
        if (side, quality) in made:
            return made[side, quality]
        width, height = frames[0].size
        scale = side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        scaled = [
            f if f.size == size else f.resize(size, PILImage.Resampling.LANCZOS) for f in frames
        ]
        first = scaled[0]
        if kind == "JPEG" and first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
        settings = dict(options)
        if kind in ("JPEG", "WEBP"):
            settings["quality"] = quality or 85
        if kind == "JPEG":
            settings["optimize"] = True
        if kind == "PNG":
            settings["compress_level"] = 9
        if len(scaled) > 1:
            settings["append_images"] = scaled[1:]
        out = io.BytesIO()
        first.save(out, format=kind, **settings)
        made[side, quality] = out.getvalue()
        return made[side, quality]

    return encode


def _largest(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest value in [low, high] that fits, assuming that smaller values fit better."""
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low
