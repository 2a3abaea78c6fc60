"""Images: recognised by content, metadata removed losslessly keeping orientation, fitted."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageChops

from plurcast.media import clean, formats, images
from tests.images import (
    COMMENT,
    GPS_IFD,
    ORIENTATION,
    XMP,
    animation,
    decoded,
    has_location,
    photo,
    picture,
)

MIMES = {"JPEG": formats.JPEG, "PNG": formats.PNG, "WEBP": formats.WEBP, "GIF": formats.GIF}


# --- what a file is ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_type_is_recognised_by_content(fmt: str) -> None:
    assert formats.sniff(photo(fmt)[:12]) == MIMES[fmt]


def test_gif_and_non_images() -> None:
    assert formats.sniff(animation()[:12]) == formats.GIF
    assert formats.sniff(b"%PDF-1.7\n") is None
    assert formats.describe(b"%PDF-1.7\n") == "a PDF document"
    assert formats.sniff(b"") is None
    assert formats.describe(b"") == "not an image"
    assert formats.describe(b"\x00\x00\x00\x18ftypheic") == "a video or HEIC photo"


# --- privacy: metadata out, pixels and orientation kept --------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_location_camera_and_xmp_are_removed_keeping_orientation(fmt: str) -> None:
    original = photo(fmt)
    assert has_location(original)
    cleaned = clean.strip(original, MIMES[fmt])
    assert not has_location(cleaned)
    assert XMP not in cleaned
    assert COMMENT not in cleaned
    result = decoded(cleaned)
    assert dict(result.getexif()) == {ORIENTATION: 6}
    assert not result.getexif().get_ifd(GPS_IFD)
    # Not re-encoded: every pixel is as it was.
    assert (
        ImageChops.difference(result.convert("RGB"), decoded(original).convert("RGB")).getbbox()
        is None
    )
    assert images.inspect(cleaned) == images.inspect(original)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_an_upright_photo_keeps_no_exif_at_all(fmt: str) -> None:
    cleaned = clean.strip(photo(fmt, orientation=1), MIMES[fmt])
    assert not decoded(cleaned).getexif()
    assert b"Exif" not in cleaned and b"eXIf" not in cleaned


def test_a_jpeg_keeps_its_colour_profile_and_loses_what_follows_the_picture() -> None:
    icc = b"\x00\x00\x02\x0cFAKE-ICC" + bytes(500)
    depth_map = photo("JPEG", (16, 16))  # phones append such images, each with its own EXIF
    original = photo("JPEG", icc_profile=icc) + depth_map
    cleaned = clean.strip(original, formats.JPEG)
    assert decoded(cleaned).info.get("icc_profile") == icc
    assert cleaned.endswith(b"\xff\xd9") and cleaned.count(b"\xff\xd8") == 1
    assert not has_location(cleaned)


def test_a_progressive_jpeg_is_copied_whole() -> None:
    original = photo("JPEG", (120, 90), progressive=True, smooth=True)
    cleaned = clean.strip(original, formats.JPEG)
    assert decoded(cleaned).tobytes() == decoded(original).tobytes()
    assert not has_location(cleaned)


def _with_gif_xmp(data: bytes) -> bytes:
    """An XMP application extension (the way Adobe writes it) inserted after the header."""
    packed = data[10]
    at = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    body = XMP + bytes(range(255, -1, -1)) + b"\x00"  # the "magic trailer" makes it sub-blocks
    return data[:at] + b"\x21\xff\x0bXMP DataXMP" + body + data[at:]


def test_a_gif_loses_comments_and_xmp_and_keeps_its_frames_and_loop() -> None:
    original = _with_gif_xmp(animation(3, comment=COMMENT))
    assert images.inspect(original).frames == 3
    cleaned = clean.strip(original, formats.GIF)
    assert COMMENT not in cleaned and b"GPSLatitude" not in cleaned
    assert b"NETSCAPE2.0" in cleaned
    result = images.inspect(cleaned)
    assert (result.frames, result.width, result.height) == (3, 40, 30)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_file_cut_short_is_damaged(fmt: str) -> None:
    data = animation() if fmt == "GIF" else photo(fmt)
    with pytest.raises(clean.Damaged):
        clean.strip(data[: len(data) // 2], MIMES[fmt])


def test_orientation_is_read_from_exif() -> None:
    assert clean.orientation(photo("JPEG", orientation=8), formats.JPEG) == 8
    assert clean.orientation(photo("JPEG", metadata=False), formats.JPEG) == 1
    assert clean.orientation(b"\xff\xd8\xff\xe1\x00", formats.JPEG) == 1  # garbage: none


# --- inspect: whole files only, dimensions as shown -----------------------------------------


def test_dimensions_are_as_shown_after_orientation() -> None:
    turned = images.inspect(photo("JPEG", (80, 60), orientation=6))
    assert (turned.width, turned.height, turned.frames) == (60, 80, 1)
    upright = images.inspect(photo("PNG", (80, 60), orientation=1))
    assert (upright.mime, upright.width, upright.height) == (formats.PNG, 80, 60)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_truncated_image_is_unreadable(fmt: str) -> None:
    data = animation() if fmt == "GIF" else photo(fmt, (200, 150))
    with pytest.raises(images.Unreadable, match=r"truncated|cannot be decoded"):
        images.inspect(data[: len(data) * 2 // 3])


def test_not_an_image_says_what_it_is() -> None:
    with pytest.raises(images.Unreadable, match="it is a PDF document"):
        images.inspect(b"%PDF-1.4\n" + bytes(100))
    with pytest.raises(images.Unreadable, match="not an image"):
        images.inspect(b"")


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        import zlib

        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 30_000, 30_000, 1, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(images.Unreadable, match="pixels"):
        images.inspect(bomb)


# --- fit: the largest re-encoding under a limit ------------------------------------------


def test_fit_lowers_jpeg_quality_to_the_largest_size_under_the_limit() -> None:
    original = photo("JPEG", (600, 400), smooth=True, quality=98)
    limit = len(original) // 2
    fitted = images.fit(original, limit)
    assert 0.8 * limit < len(fitted) <= limit
    result = decoded(fitted)
    assert result.size == (400, 600)  # orientation 6 applied to the pixels …
    assert ORIENTATION not in result.getexif()  # … so none is needed
    assert not has_location(fitted)


def test_fit_scales_down_when_quality_is_not_enough() -> None:
    original = photo("JPEG", (400, 300), orientation=1, quality=95)  # noise: barely compresses
    fitted = images.fit(original, len(original) // 8)
    assert len(fitted) <= len(original) // 8
    width, height = decoded(fitted).size
    assert width < 400 and abs(width / height - 4 / 3) < 0.02


def test_fit_scales_a_png_and_keeps_it_a_png() -> None:
    original = photo("PNG", (300, 200), orientation=1)
    limit = len(original) // 3
    fitted = images.fit(original, limit)
    assert formats.sniff(fitted) == formats.PNG
    assert 0.8 * limit < len(fitted) <= limit
    assert not has_location(fitted)


def test_fit_keeps_every_frame_of_an_animation() -> None:
    original = animation(4, (120, 90))
    fitted = images.fit(original, len(original) // 2)
    assert len(fitted) <= len(original) // 2
    assert images.inspect(fitted).frames == 4


def test_fit_with_keep_metadata_keeps_the_location() -> None:
    original = photo("JPEG", (300, 200), smooth=True, quality=98)
    fitted = images.fit(original, len(original) // 2, keep_metadata=True)
    assert decoded(fitted).getexif().get_ifd(GPS_IFD)


def test_what_cannot_fit_is_said() -> None:
    with pytest.raises(images.Unreadable, match="does not fit"):
        images.fit(photo("PNG", (200, 200), orientation=1), 100)


def test_pillow_is_not_imported_by_cleaning() -> None:
    import subprocess
    import sys

    code = "import sys; from plurcast.media import clean, formats; print('PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pixels_of_an_image_helper_are_noise() -> None:
    # The size checks above rely on noise compressing badly.
    data = io.BytesIO()
    picture((100, 100)).save(data, "PNG")
    assert len(data.getvalue()) > 25_000
    assert isinstance(Image.open(data), Image.Image)
