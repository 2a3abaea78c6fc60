"""Location and camera metadata removed from an image's own bytes, keeping its orientation.

A phone writes where a photo was taken (EXIF GPS), the camera's serial number and settings
(maker notes), the editing history and often the place again (XMP, IPTC), and sometimes
whole extra images after the picture (a depth map or a gain map, each with its own EXIF).
None of that is needed to show the picture. What is needed stays: the pixels exactly as
they were (nothing is decoded or re-encoded), the colour profile, and the orientation —
written back as a minimal EXIF block holding only that one tag, so a portrait photo is
still shown upright.

Per format, the container is walked and only what is known to be harmless is copied:
- JPEG: SOI, APP0 (JFIF), APP2 ICC_PROFILE, APP14 (Adobe colour transform), tables, frames
  and scans; every other APPn (EXIF, XMP, IPTC, vendor blocks), comments, and anything
  after the end-of-image marker are dropped.
- PNG: the chunks that define the picture (IHDR, PLTE, IDAT, IEND, transparency, colour,
  pixel size, animation); text chunks (tEXt/zTXt/iTXt, where XMP lives), eXIf and tIME
  are dropped.
- WebP: image, alpha, animation and ICC chunks; EXIF and XMP chunks are dropped and the
  VP8X flags say so.
- GIF: images, graphic controls and the looping extension; comments and application
  blocks such as XMP are dropped. (GIF has no orientation.)

Pure Python: it runs on every image of every post, at write time.
"""

from __future__ import annotations

import struct
import zlib

from plurcast.media import formats

ORIENTATION_TAG = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"


class Damaged(ValueError):
    """The file's structure is broken (it ends too early, a length points past its end)."""


def strip(data: bytes, mime: str) -> bytes:
    """`data` without its metadata (see the module docstring); raises Damaged."""
    cleaner = {
        formats.JPEG: _jpeg,
        formats.PNG: _png,
        formats.WEBP: _webp,
        formats.GIF: _gif,
    }[mime]
    try:
        return cleaner(data)
    except Damaged:
        raise
    except (IndexError, ValueError, struct.error):  # ValueError: bytes.index found no marker
        raise Damaged("the file ends in the middle of its structure") from None


def check(data: bytes, mime: str) -> None:
    """Raise Damaged unless the container is whole, up to its end marker (a decoder may
    accept a GIF that stops after its first frames)."""
    strip(data, mime)


def orientation(data: bytes, mime: str) -> int:
    """The EXIF orientation (1–8) an image asks for; 1 when it has none."""
    tiff = _exif_of(data, mime)
    return 1 if tiff is None else _tiff_orientation(tiff)


# --- EXIF -------------------------------------------------------------------------------


def _tiff_orientation(tiff: bytes) -> int:
    """Orientation from IFD0 of a TIFF structure (an EXIF block without its header)."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(min(count, 1000)):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * i)
            if tag == ORIENTATION_TAG and kind == 3:  # SHORT, stored in the value field
                (number,) = struct.unpack_from(order + "H", value)
                return number if 1 <= number <= 8 else 1
    except (KeyError, struct.error):
        pass
    return 1


def minimal_exif(turn: int) -> bytes:
    """A TIFF structure with one entry, the orientation (no header, as PNG and WebP hold it)."""
    entry = struct.pack(">HHIH2x", ORIENTATION_TAG, 3, 1, turn)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


def _exif_of(data: bytes, mime: str) -> bytes | None:
    """The image's EXIF TIFF structure, if it has one (malformed files: None)."""
    try:
        if mime == formats.JPEG:
            for marker, body in _jpeg_segments(data):
                if marker == 0xE1 and body.startswith(_EXIF_HEADER):
                    return body[len(_EXIF_HEADER) :]
        elif mime == formats.PNG:
            for kind, body in _png_chunks(data):
                if kind == b"eXIf":
                    return body
        elif mime == formats.WEBP:
            for fourcc, body in _riff_chunks(data):
                if fourcc == b"EXIF":
                    return body.removeprefix(_EXIF_HEADER)
    except (IndexError, struct.error, Damaged):
        return None
    return None


# --- JPEG -------------------------------------------------------------------------------

_SOS, _EOI = 0xDA, 0xD9
_KEPT_APP = (0xE0, 0xEE)  # APP0 (JFIF), APP14 (Adobe); APP2 only when it is an ICC profile


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, body) of the segments before the first scan."""
    out: list[tuple[int, bytes]] = []
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            raise Damaged("a JPEG segment does not start with a marker")
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in (_SOS, _EOI):
            return out
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        out.append((marker, data[pos + 2 : pos + length]))
        pos += length
    return out


def _keep_jpeg_segment(marker: int, body: bytes) -> bool:
    if marker == 0xE2:
        return body.startswith(b"ICC_PROFILE\x00")
    if 0xE0 <= marker <= 0xEF:
        return marker in _KEPT_APP
    return marker != 0xFE  # COM


def _jpeg(data: bytes) -> bytes:
    turn = orientation(data, formats.JPEG)
    out = bytearray(b"\xff\xd8")
    pos = 2
    first = True
    while True:
        if data[pos] != 0xFF:
            raise Damaged("a JPEG segment does not start with a marker")
        while data[pos] == 0xFF:
            pos += 1
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            return bytes(out)  # whatever follows (a depth map, a gain map …) stays behind
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            out += bytes((0xFF, marker))
            continue
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2 or pos + length > len(data):
            raise Damaged("a JPEG segment is longer than the file")
        segment = data[pos - 2 : pos + length]
        body = data[pos + 2 : pos + length]
        pos += length
        if first:
            # EXIF goes first (after JFIF's APP0, which must be first when it is there).
            first = False
            if marker == 0xE0:
                out += segment
            if turn != 1:
                exif = _EXIF_HEADER + minimal_exif(turn)
                out += b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif
            if marker == 0xE0:
                continue
        if _keep_jpeg_segment(marker, body):
            out += segment
        if marker == _SOS:
            pos = _copy_scan(data, pos, out)


def _copy_scan(data: bytes, pos: int, out: bytearray) -> int:
    """Copy entropy-coded data up to the next marker (FF followed by neither 00 nor RSTn)."""
    end = pos
    while True:
        end = data.index(b"\xff", end)
        follower = data[end + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
            end += 1 if follower == 0xFF else 2
            continue
        out += data[pos:end]
        return end


# --- PNG --------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEPT = frozenset(
    {
        b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT",
        b"sRGB", b"cICP", b"mDCV", b"mDCv", b"cLLI", b"cLLi", b"bKGD", b"hIST", b"pHYs",
        b"sPLT", b"acTL", b"fcTL", b"fdAT",
    }
)  # fmt: skip


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    pos = len(_PNG_SIGNATURE)
    while True:
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > len(data):
            raise Damaged("a PNG chunk is longer than the file")
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
        if kind == b"IEND":
            return out


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(data: bytes) -> bytes:
    turn = orientation(data, formats.PNG)
    out = bytearray(_PNG_SIGNATURE)
    for kind, body in _png_chunks(data):
        if kind == b"IHDR":
            out += _png_chunk(kind, body)
            if turn != 1:
                out += _png_chunk(b"eXIf", minimal_exif(turn))
        elif kind in _PNG_KEPT or kind[0] < 0x61:  # an unknown critical chunk cannot be left out
            out += _png_chunk(kind, body)
    return bytes(out)


# --- WebP -------------------------------------------------------------------------------

_VP8X_EXIF, _VP8X_XMP = 0x08, 0x04
_WEBP_KEPT = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP"})


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    (size,) = struct.unpack_from("<I", data, 4)
    end = min(len(data), 8 + size)
    out: list[tuple[bytes, bytes]] = []
    pos = 12
    while pos + 8 <= end:
        fourcc, length = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + length > end:
            raise Damaged("a WebP chunk is longer than the file")
        out.append((fourcc, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return out


def _riff_chunk(fourcc: bytes, body: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def _webp(data: bytes) -> bytes:
    chunks = _riff_chunks(data)
    extended = any(fourcc == b"VP8X" for fourcc, _ in chunks)
    turn = orientation(data, formats.WEBP) if extended else 1
    body = bytearray(b"WEBP")
    for fourcc, chunk in chunks:
        kept = chunk
        if fourcc == b"VP8X":
            flags = (chunk[0] & ~(_VP8X_EXIF | _VP8X_XMP)) | (_VP8X_EXIF if turn != 1 else 0)
            kept = bytes((flags,)) + chunk[1:]
        if fourcc in _WEBP_KEPT:
            body += _riff_chunk(fourcc, kept)
    if turn != 1:
        body += _riff_chunk(b"EXIF", minimal_exif(turn))
    return b"RIFF" + struct.pack("<I", len(body)) + bytes(body)


# --- GIF --------------------------------------------------------------------------------

_GIF_KEPT_APPS = (b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012")


def _gif_sub_blocks(data: bytes, pos: int) -> int:
    """The position after a run of sub-blocks (ended by a zero-length one)."""
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _gif(data: bytes) -> bytes:
    packed = data[10]
    pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    out = bytearray(data[:pos])
    while True:
        start = pos
        introducer = data[pos]
        if introducer == 0x3B:  # trailer
            out += b"\x3b"
            return bytes(out)
        if introducer == 0x21:
            label = data[pos + 1]
            end = _gif_sub_blocks(data, pos + 2)
            keep = label in (0xF9, 0x01)  # graphic control, plain text
            if label == 0xFF:
                keep = data[pos + 3 : pos + 3 + data[pos + 2]] in _GIF_KEPT_APPS
            if keep:
                out += data[start:end]
            pos = end
        elif introducer == 0x2C:
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _gif_sub_blocks(data, pos + 1)  # after the LZW minimum code size
            if pos > len(data):
                raise Damaged("a GIF frame is longer than the file")
            out += data[start:pos]
        else:
            raise Damaged("a GIF block has an unknown introducer")
