"""Images for the tests, made with Pillow: photos that carry what a phone writes into them.

`photo()` makes a JPEG, PNG or WebP with EXIF GPS coordinates, a camera make and model, a
maker note, XMP (with the position again) and, for JPEG, a comment: everything that must
not leave the machine. `GPS_MARKERS` are byte strings found only in that metadata.
"""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image, PngImagePlugin

MAKER_NOTE = b"MAKERNOTE serial=CAM-0042-SECRET"
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
    b'exif:GPSLatitude="52,31.2N" exif:GPSLongitude="13,24.6E"/></rdf:RDF></x:xmpmeta>'
)
COMMENT = b"taken at home, Hauptstrasse 1"
# Found in the metadata above and nowhere in the pixels of the test images.
GPS_MARKERS = (MAKER_NOTE, b"GPSLatitude", b"Hauptstrasse", b"Phonemaker")
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
ORIENTATION = 0x0112


def exif(orientation: int = 6) -> Image.Exif:
    data = Image.Exif()
    data[ORIENTATION] = orientation
    data[0x010F] = "Phonemaker"
    data[0x0110] = "Phone 12"
    gps = data.get_ifd(GPS_IFD)
    gps.update({1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 36.0)})
    data.get_ifd(EXIF_IFD)[0x927C] = MAKER_NOTE
    return data


def picture(
    size: tuple[int, int] = (80, 60), *, seed: int = 1, smooth: bool = False
) -> Image.Image:
    """An RGB picture: noise (compresses badly: big files), or a smooth gradient with grain."""
    width, height = size
    rng = random.Random(seed)
    if not smooth:
        return Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    grain = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    return Image.blend(img, grain, 0.15)


def photo(
    fmt: str = "JPEG",
    size: tuple[int, int] = (80, 60),
    *,
    orientation: int = 6,
    metadata: bool = True,
    smooth: bool = False,
    **options: Any,
) -> bytes:
    """A photo in `fmt` (JPEG, PNG, WEBP) with a phone's metadata unless `metadata=False`."""
    img = picture(size, smooth=smooth)
    if metadata:
        options["exif"] = exif(orientation).tobytes()
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", XMP.decode())
            info.add_text("Comment", COMMENT.decode())
            options["pnginfo"] = info
        else:
            options["xmp"] = XMP
        if fmt == "JPEG":
            options["comment"] = COMMENT
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def animation(frames: int = 3, size: tuple[int, int] = (40, 30), **options: Any) -> bytes:
    """An animated GIF, looping, with a comment."""
    images = [picture(size, seed=i).convert("P") for i in range(frames)]
    out = io.BytesIO()
    images[0].save(
        out, "GIF", save_all=True, append_images=images[1:], loop=0, duration=80, **options
    )
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def has_location(data: bytes) -> bool:
    """Whether any of the test metadata, or a GPS IFD, is still in `data`."""
    if any(marker in data for marker in GPS_MARKERS):
        return True
    return bool(decoded(data).getexif().get_ifd(GPS_IFD))
