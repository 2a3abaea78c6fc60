"""An export's images: each one a file beside the export (`<folder>/<sha256 prefix>/<name>`),
its path in the entry relative to the export's own folder — where plur-import looks."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plurcast.errors import RuntimeFailure
from plurcast.store.base import Database
from plurcast.transfer.fields import Entry

# A stored image's name that cannot be a file name is written under this one (+ its type).
_PLAIN_NAME = "image"


def with_images(
    entry: Entry, metadata: Mapping[str, Any], folder: str, files: dict[str, str]
) -> Entry:
    """The entry with its images' paths (each file added to `files`) and alt texts; `fit`
    when some image was re-encoded for a platform (the import re-encodes it again);
    `keep_metadata` when they were stored with their location and camera data."""
    stored = metadata.get("images") or []
    if not stored:
        return entry
    paths = []
    for image in stored:
        path = f"{folder}/{image['sha256'][:16]}/{_file_name(image)}"
        files[path] = image["sha256"]
        paths.append(path)
    return dataclasses.replace(
        entry,
        images=tuple(paths),
        alts=tuple(str(image.get("alt") or "") for image in stored),
        fit=True if any(image.get("fitted") for image in stored) else None,
        keep_metadata=any(image.get("kept_metadata") for image in stored),
    )


def _file_name(image: Mapping[str, Any]) -> str:
    """The image's own name when it can be a file name, else `image.<type>`."""
    from plurcast.media.formats import EXTENSIONS

    name = str(image.get("name") or "")
    extension = EXTENSIONS.get(str(image.get("mime")), "")
    plain = (
        name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and name.isprintable()
        and len(name.encode()) <= 200
    )
    return name if plain else f"{_PLAIN_NAME}.{extension or 'bin'}"


def save(conn: Database, files: Mapping[str, str], base: Path) -> None:
    """Write each exported image (path relative to `base` → sha256) from the media store:
    private (folders 0700, files 0600), each file whole or not at all. No images, no store:
    a queue not made yet has none to open."""
    if not files:
        return
    from plurcast.media import store as media_store

    store = media_store.for_database(conn)
    for relative, digest in files.items():
        path = base / relative
        data = store.read(digest)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                Path(temp).replace(path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RuntimeFailure(
                f"cannot write the image {path}: {exc.strerror}",
                "check that the folder is writable and the disk not full",
            ) from None
