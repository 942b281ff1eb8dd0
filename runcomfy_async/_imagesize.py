"""What a media file's bytes tell, from its first bytes or a data: URI (no I/O): its format,
and an image's width and height in pixels."""

from __future__ import annotations

import base64
import binascii
import re
import struct
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "Measurement",
    "NeedMore",
    "image_size",
    "measure_bytes",
    "measure_data_uri",
    "sniff",
]

#: What each format `sniff` names holds: "image", "video", "audio", or "text" (a web page).
KINDS: dict[str, str] = {
    "png": "image",
    "jpeg": "image",
    "webp": "image",
    "gif": "image",
    "bmp": "image",
    "tiff": "image",
    "avif": "image",
    "heic": "image",
    "mp4": "video",
    "mov": "video",
    "3gp": "video",
    "webm": "video",
    "mkv": "video",
    "avi": "video",
    "m4a": "audio",
    "wav": "audio",
    "mp3": "audio",
    "ogg": "audio",
    "flac": "audio",
    "html": "text",
}

MB = 1024 * 1024  # bytes in a megabyte of RunComfy's `file_size_mb`
_DATA_URI = re.compile(r"data:(?P<type>[^,]*?)(?P<b64>;base64)?,(?P<data>.*)", re.I | re.S)
_SPACE = re.compile(rb"\s+")
_PNG = b"\x89PNG\r\n\x1a\n"
# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn: no length follows
_FTYP_BRANDS = {
    b"qt  ": "mov",
    b"avif": "avif",
    b"avis": "avif",
    b"heic": "heic",
    b"heix": "heic",
    b"mif1": "heic",
    b"msf1": "heic",
    b"M4A ": "m4a",
    b"M4B ": "m4a",
}


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The size lies past the bytes given: read the first `total` bytes and ask again."""

    total: int


def image_size(head: bytes) -> tuple[str, int, int] | NeedMore | None:
    """(format, width, height) in pixels of the PNG, JPEG, WebP, GIF or BMP starting `head`.

    NeedMore when `head` stops before the size (a JPEG's SOF may follow large EXIF
    segments); None when `head` is not one of these formats or is malformed. Never raises.
    """
    try:
        found = _parse(head)
    except (struct.error, IndexError, ValueError):  # a safety net: the parsers check lengths
        return None
    if isinstance(found, tuple) and not (found[1] > 0 and found[2] > 0):
        return None
    return found


def _parse(head: bytes) -> tuple[str, int, int] | NeedMore | None:
    if head.startswith(_PNG):
        if len(head) < 24:
            return NeedMore(24)
        if head[12:16] != b"IHDR":
            return None
        return ("png", *struct.unpack(">II", head[16:24]))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ("gif", *struct.unpack("<HH", head[6:10])) if len(head) >= 10 else NeedMore(10)
    if head[:2] == b"\xff\xd8":
        return _jpeg(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head[:2] == b"BM" and len(head) >= 6:
        return _bmp(head)
    return None


def _jpeg(head: bytes) -> tuple[str, int, int] | NeedMore | None:
    """Walk the marker segments after SOI to the first SOFn."""
    pos = 2
    while True:  # each turn moves `pos` on by at least one byte
        if pos + 2 > len(head):
            return NeedMore(pos + 9)  # enough for a marker, its length, and a SOF's size
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # a fill byte before the marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI, or scan data before any frame
            return None
        if pos + 4 > len(head):
            return NeedMore(pos + 9)
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if length < 2:
            return None
        if marker in _SOF:
            if pos + 9 > len(head):
                return NeedMore(pos + 9)
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return "jpeg", width, height
        pos += 2 + length


def _webp(head: bytes) -> tuple[str, int, int] | NeedMore | None:
    if len(head) < 30:
        return NeedMore(30)
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return "webp", width, height
    if chunk == b"VP8L":
        if head[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", head[21:25])
        return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return "webp", width & 0x3FFF, height & 0x3FFF
    return None


def _bmp(head: bytes) -> tuple[str, int, int] | NeedMore | None:
    if len(head) < 26:
        return NeedMore(26)
    (header_size,) = struct.unpack("<I", head[14:18])
    if header_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", head[18:22])
    elif 40 <= header_size <= 124:
        width, height = struct.unpack("<ii", head[18:26])
    else:
        return None
    return "bmp", width, abs(height)  # a negative height means rows run top-down


def sniff(head: bytes) -> str | None:
    """The format of the file starting `head` (a key of KINDS), or None if not recognised."""
    found = image_size(head)
    if isinstance(found, tuple):
        return found[0]
    if head.startswith((_PNG, b"\xff\xd8\xff", b"GIF87a", b"GIF89a")):  # size unreadable
        return "png" if head[:1] == b"\x89" else "jpeg" if head[:1] == b"\xff" else "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return _FTYP_BRANDS.get(brand) or ("3gp" if brand.startswith(b"3g") else "mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, or WebM by its DocType
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF":
        return {b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3" or _mpeg_audio_frame(head):
        return "mp3"
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return None


def _mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header: sync bits, and no reserved version, layer, rate or bitrate."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    return version != 1 and layer != 0 and bitrate not in (0, 15) and rate != 3


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a file's first bytes tell: `format` (a name from `_imagesize.KINDS`), the server's
    `content_type`, `size` in bytes, `width` and `height` in pixels, each None when unknown;
    `failure` says why the file could not be read at all (that always blocks the submit)."""

    format: str | None = None
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    failure: str | None = None

    def value(self, measure: str) -> tuple[float, str] | None:
        """The value of a rule's `measure` (`width_pixels`, `height_pixels`, `width/height`,
        `file_size_mb`) with words saying it, or None when unknown."""
        width, height, size = self.width, self.height, self.size
        if measure == "width_pixels" and width is not None:
            return width, f"image is {width} px wide"
        if measure == "height_pixels" and height is not None:
            return height, f"image is {height} px tall"
        if measure == "width/height" and width is not None and height is not None:
            ratio = width / height
            return ratio, f"image is {width}x{height} px (width/height {ratio:.3g})"
        if measure == "file_size_mb" and size is not None:
            return size / MB, f"file is {size / MB:.2f} MB ({size} bytes)"
        return None


def measure_bytes(head: bytes, *, size: int | None, content_type: str | None) -> Measurement:
    """The Measurement of a file whose first bytes are `head` and whose length is `size`."""
    found = image_size(head)
    width, height = (found[1], found[2]) if isinstance(found, tuple) else (None, None)
    return Measurement(sniff(head), content_type, size, width, height)


def measure_data_uri(uri: str) -> Measurement:
    """Decode a `data:` URI (base64 or percent-encoded) and measure it, with no network."""
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        return Measurement(failure="not a valid data: URI (no comma before its data)")
    data = urllib.parse.unquote_to_bytes(match["data"])
    if match["b64"]:
        try:
            data = base64.b64decode(_SPACE.sub(b"", data), validate=True)
        except (binascii.Error, ValueError):
            return Measurement(failure="its data is marked base64 but is not valid base64")
    content_type = match["type"].split(";")[0].strip().lower() or "text/plain"
    return measure_bytes(data, size=len(data), content_type=content_type)
