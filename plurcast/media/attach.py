"""The images of a post being written: read, checked against every target, cleaned, stored.

Everything that can be refused is refused before anything is written (`prepare`), naming
the file and the fix: a directory or a FIFO, an empty or huge file, a file that is not a
JPEG, PNG, GIF or WebP whatever its name says, a truncated one, more images than a
platform takes, alt text over a platform's limit, a file over a platform's byte limit
(unless `fit`, which re-encodes it for that platform to the largest size under it). Only
then does `store` copy the cleaned bytes into the media store and return the entries the
post's metadata keeps.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plurcast.errors import InvalidInput
from plurcast.value import Value

if TYPE_CHECKING:
    from plurcast.media.store import MediaStore
    from plurcast.platforms.registry import Limits

MAX_IMAGES = 4
# A file bigger than this is refused without being read: no photo is this big.
MAX_INPUT_BYTES = 50_000_000


class ImageSpec(Value):
    """One `--image PATH [--alt TEXT]`."""

    path: str
    alt: str | None = None


@dataclass
class Ready:
    """An image checked and cleaned, with the re-encodings some platforms need."""

    spec: ImageSpec
    data: bytes
    mime: str
    width: int
    height: int
    variants: dict[str, tuple[bytes, int, int]] = field(default_factory=dict)  # platform →
    kept_metadata: bool = False  # --keep-metadata: its location and camera data are left in


def prepare(
    specs: Sequence[ImageSpec],
    limits: Sequence[Limits],
    *,
    fit: bool,
    keep_metadata: bool,
    require_alt: bool,
    warn: Callable[[str], None],
) -> list[Ready]:
    """Check and clean every image for every target's `limits`; nothing is written."""
    from plurcast.media import clean, images

    if not specs:
        return []
    if len(specs) > MAX_IMAGES:
        raise InvalidInput(f"{len(specs)} images, over the limit of {MAX_IMAGES} per post")
    for limit in limits:
        if len(specs) > limit.max_images:
            platform = limit.platform
            what = f"over {platform}'s limit of {limit.max_images}"
            if not limit.max_images:
                what = f"but {platform} takes no images"
            raise InvalidInput(
                f"{len(specs)} image{'s' if len(specs) != 1 else ''}, {what}",
                f"attach fewer, or leave {platform} out with -p",
            )
    ready: list[Ready] = []
    for number, spec in enumerate(specs, start=1):
        _check_alt(number, spec, limits, require_alt, warn)
        raw = read_image(spec.path)
        try:
            picture = images.inspect(raw)
            data = raw if keep_metadata else clean.strip(raw, picture.mime)
        except (images.Unreadable, clean.Damaged) as exc:
            raise InvalidInput(
                f"--image {spec.path}: {exc}", "give a whole JPEG, PNG, GIF or WebP image"
            ) from None
        item = Ready(spec, data, picture.mime, picture.width, picture.height, {}, keep_metadata)
        for limit in limits:
            platform = limit.platform
            if limit.max_image_bytes is None or len(data) <= limit.max_image_bytes:
                continue
            if not fit:
                raise InvalidInput(
                    f"--image {spec.path} is {len(data):,} bytes, over {platform}'s limit of "
                    f"{limit.max_image_bytes:,} per image",
                    f"add --fit to re-encode it to fit (or [media] fit = true), or leave "
                    f"{platform} out with -p",
                )
            try:
                smaller = images.fit(data, limit.max_image_bytes, keep_metadata=keep_metadata)
            except images.Unreadable as exc:
                raise InvalidInput(f"--image {spec.path}: {exc}") from None
            shown = images.inspect(smaller)
            item.variants[platform] = (smaller, shown.width, shown.height)
        ready.append(item)
    return ready


def _check_alt(
    number: int,
    spec: ImageSpec,
    limits: Sequence[Limits],
    require_alt: bool,
    warn: Callable[[str], None],
) -> None:
    from plurcast import content

    alt = spec.alt
    if alt is None or not alt.strip():
        what = f"image {number} ({spec.path}) has no alt text"
        if require_alt:
            raise InvalidInput(what, f"add --alt TEXT after --image {spec.path}")
        warn(f"{what}: people who use a screen reader will not know what it shows")
        return
    try:
        alt.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"the alt text of image {number} is not valid UTF-8") from None
    if any(ord(c) < 32 and c not in "\n\t" for c in alt):
        raise InvalidInput(
            f"the alt text of image {number} contains control characters", "remove them"
        )
    length = content.graphemes(alt)
    for limit in limits:
        if length > limit.max_alt_chars:
            raise InvalidInput(
                f"the alt text of image {number} is {length:,} characters, over "
                f"{limit.platform}'s "
                f"limit of {limit.max_alt_chars:,}",
                "shorten it",
            )


def read_image(path: str) -> bytes:
    """The bytes of the file `path`, refusing what is not a regular, readable, sane file."""
    where = f"--image {path}"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(Path(path).expanduser(), flags)  # non-blocking: a FIFO must not hang us
    except FileNotFoundError:
        raise InvalidInput(f"{where}: no such file", "check the path") from None
    except IsADirectoryError:
        raise InvalidInput(f"{where} is a directory", "give an image file") from None
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"{where} is a directory", "give an image file")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"{where} is not a regular file", "give an image file")
        if info.st_size == 0:
            raise InvalidInput(f"{where} is empty (0 bytes)", "give an image file")
        if info.st_size > MAX_INPUT_BYTES:
            raise InvalidInput(
                f"{where} is {info.st_size:,} bytes, over the {MAX_INPUT_BYTES:,} an image "
                "may have",
                "make it smaller first",
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def store(media: MediaStore, ready: Sequence[Ready]) -> list[dict[str, Any]]:
    """Copy the images into the media store; the entries for the post's metadata."""
    entries: list[dict[str, Any]] = []
    for item in ready:
        entry: dict[str, Any] = {
            "sha256": media.put(item.data),
            "mime": item.mime,
            "size": len(item.data),
            "width": item.width,
            "height": item.height,
            "alt": (item.spec.alt or "").strip(),
            "name": Path(item.spec.path).name,
        }
        if item.kept_metadata:  # so that plur-export says so, and an import keeps it too
            entry["kept_metadata"] = True
        if item.variants:
            entry["fitted"] = {
                platform: {
                    "sha256": media.put(data),
                    "size": len(data),
                    "width": width,
                    "height": height,
                }
                for platform, (data, width, height) in item.variants.items()
            }
        entries.append(entry)
    return entries


def for_platform(entry: dict[str, Any], platform: str) -> dict[str, Any]:
    """The stored image a platform gets: its re-encoding when it needed one."""
    fitted = entry.get("fitted", {}).get(platform)
    return {**entry, **fitted} if fitted else entry


def digests(entries: Iterable[dict[str, Any]]) -> list[str]:
    """The sha256 of every file the entries refer to: each image and its re-encodings."""
    found: list[str] = []
    for entry in entries:
        found.append(entry["sha256"])
        found += [fitted["sha256"] for fitted in entry.get("fitted", {}).values()]
    return list(dict.fromkeys(found))


def check_alt_texts(
    entries: Sequence[dict[str, Any]],
    limits: Sequence[Limits],
    *,
    require_alt: bool,
    warn: Callable[[str], None],
) -> None:
    """New alt texts of stored images (`plur-queue edit --alt`) against every target."""
    for number, entry in enumerate(entries, start=1):
        spec = ImageSpec(entry.get("name") or f"image {number}", entry.get("alt") or None)
        _check_alt(number, spec, limits, require_alt, warn)
