"""A post's images at write time: every refusal before anything is written, then stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plurcast.errors import InvalidInput
from plurcast.media import attach, files
from plurcast.media.attach import ImageSpec
from plurcast.platforms.registry import Limits
from tests.helpers import FileMedia, write_file
from tests.images import decoded, has_location, photo


def _limits(platform: str, images: int, image_bytes: int | None, alt: int) -> Limits:
    return Limits(platform, "default", (), images, image_bytes, alt)


BLUESKY = _limits("bluesky", 4, 2_000_000, 2000)
MASTODON = _limits("mastodon", 4, 16 * 1024 * 1024, 1500)
NOSTR = _limits("nostr", 4, None, 5000)
ALL = [NOSTR, MASTODON, BLUESKY]


WARNINGS: list[str] = []


def _prepare(
    specs: list[ImageSpec], limits: list[Limits] = ALL, **options: bool
) -> list[attach.Ready]:
    WARNINGS.clear()
    settings = {"fit": False, "keep_metadata": False, "require_alt": False} | options
    return attach.prepare(specs, limits, warn=WARNINGS.append, **settings)


def test_an_image_is_checked_cleaned_and_stored(tmp_path: Path) -> None:
    path = write_file(tmp_path, "holiday.jpg", photo("JPEG", (80, 60)))
    [ready] = _prepare([ImageSpec(path, "A beach at dusk")])
    assert not has_location(ready.data)
    assert (ready.mime, ready.width, ready.height) == ("image/jpeg", 60, 80)
    assert WARNINGS == []
    store = tmp_path / "media"
    [entry] = attach.store(FileMedia(store), [ready])
    assert entry["alt"] == "A beach at dusk" and entry["name"] == "holiday.jpg"
    assert files.read(store, entry["sha256"]) == ready.data
    assert entry["size"] == len(ready.data) and "fitted" not in entry


def test_keep_metadata_keeps_the_location(tmp_path: Path) -> None:
    path = write_file(tmp_path, "a.jpg", photo("JPEG"))
    [ready] = _prepare([ImageSpec(path, "x")], keep_metadata=True)
    assert has_location(ready.data)


def test_a_missing_alt_text_warns_or_is_refused(tmp_path: Path) -> None:
    path = write_file(tmp_path, "a.png", photo("PNG"))
    _prepare([ImageSpec(path)])
    assert "has no alt text" in WARNINGS[0]
    with pytest.raises(InvalidInput, match="has no alt text"):
        _prepare([ImageSpec(path, "  ")], require_alt=True)


@pytest.mark.parametrize(
    ("alt", "reason"),
    [
        ("x" * 10_000, "10,000 characters, over nostr's limit of 5,000"),
        ("x" * 1600, "1,600 characters, over mastodon's limit of 1,500"),
        ("bad\x07bell", "control characters"),
        ("\udcff", "not valid UTF-8"),
    ],
)
def test_bad_alt_text_is_refused(tmp_path: Path, alt: str, reason: str) -> None:
    path = write_file(tmp_path, "a.png", photo("PNG"))
    with pytest.raises(InvalidInput, match=reason):
        _prepare([ImageSpec(path, alt)])


def test_files_that_are_not_images_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(200_000_000)  # sparse: 200 MB without writing them
    cases = {
        str(tmp_path): "is a directory",
        str(fifo): "is not a regular file",
        write_file(tmp_path, "empty.jpg", b""): r"is empty \(0 bytes\)",
        str(huge): "200,000,000 bytes, over the 50,000,000",
        write_file(tmp_path, "photo.jpg", b"%PDF-1.7\n" + bytes(200)): "it is a PDF document",
        write_file(tmp_path, "cut.png", photo("PNG", (200, 200))[:3000]): "truncated",
        str(tmp_path / "missing.jpg"): "no such file",
    }
    for path, reason in cases.items():
        with pytest.raises(InvalidInput, match=reason):
            _prepare([ImageSpec(path, "x")])


def test_too_many_images_for_a_platform(tmp_path: Path) -> None:
    path = write_file(tmp_path, "a.png", photo("PNG"))
    with pytest.raises(InvalidInput, match="5 images, over the limit of 4"):
        _prepare([ImageSpec(path, "x")] * 5)
    with pytest.raises(InvalidInput, match="2 images, over tiny's limit of 1"):
        _prepare([ImageSpec(path, "x")] * 2, [_limits("tiny", 1, None, 100)])
    with pytest.raises(InvalidInput, match="1 image, but text takes no images"):
        _prepare([ImageSpec(path, "x")], [_limits("text", 0, None, 0)])


def test_over_a_byte_limit_needs_fit_and_fit_makes_a_variant_for_that_platform(
    tmp_path: Path,
) -> None:
    data = photo("JPEG", (900, 600), smooth=True, quality=98)
    limit = len(data) // 2
    small = [_limits("bluesky", 4, limit, 2000), MASTODON]
    path = write_file(tmp_path, "big.jpg", data)
    with pytest.raises(InvalidInput, match=r"over bluesky's limit .* add --fit"):
        _prepare([ImageSpec(path, "x")], small)
    [ready] = _prepare([ImageSpec(path, "x")], small, fit=True)
    assert set(ready.variants) == {"bluesky"}  # Mastodon gets the full picture
    fitted, width, height = ready.variants["bluesky"]
    assert len(fitted) <= limit and decoded(fitted).size == (width, height)
    [entry] = attach.store(FileMedia(tmp_path / "media"), [ready])
    assert attach.for_platform(entry, "mastodon")["sha256"] == entry["sha256"]
    assert attach.digests([entry]) == [entry["sha256"], bluesky_sha := files.sha256(fitted)]
    bluesky = attach.for_platform(entry, "bluesky")
    assert bluesky["sha256"] == bluesky_sha and bluesky["alt"] == "x"
    assert not has_location(files.read(tmp_path / "media", bluesky["sha256"]))


def test_nothing_is_written_when_one_image_is_refused(tmp_path: Path) -> None:
    good = write_file(tmp_path, "a.png", photo("PNG"))
    bad = write_file(tmp_path, "b.jpg", b"not an image at all")
    with pytest.raises(InvalidInput):
        _prepare([ImageSpec(good, "x"), ImageSpec(bad, "y")])
    assert not (tmp_path / "media").exists()
