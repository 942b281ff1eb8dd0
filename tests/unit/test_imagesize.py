"""Image sizes and media types from first bytes: every format, truncations, and fuzzed garbage.

The builders here make headers of any size with a body of filler; test_preflight serves them.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runcomfy_async._imagesize import (
    KINDS,
    Measurement,
    NeedMore,
    image_size,
    measure_data_uri,
    sniff,
)
from runcomfy_async.simulator._media import MP4_CLIP, _chunk
from runcomfy_async.simulator._media import png as real_png

# ------------------------------------------------------------------ builders


def _fill(head: bytes, size: int, tail: bytes = b"") -> bytes:
    """`head`, then filler bytes, then `tail`: `size` bytes in all (or just head + tail)."""
    return head + b"\x55" * max(0, size - len(head) - len(tail)) + tail


def png(width: int, height: int, size: int = 0) -> bytes:
    """A PNG signature and IHDR, then one IDAT chunk of filler making `size` bytes in all."""
    head = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    data = b"\x55" * max(0, size - len(head) - 12 - 12)
    return head + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg(width: int, height: int, *, exif: int = 0, size: int = 0, thumb: bool = False) -> bytes:
    """JFIF APP0, `exif` bytes of APP1 segments (a thumbnail JPEG inside if `thumb`), DQT,
    then SOF0 with the size, filler and EOI."""
    out = (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    inner = b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 8, 120, 160, 1) + b"\x01\x11\x00"
    left = exif
    while left > 0:
        n = min(left, 65533)
        body = (b"Exif\x00\x00" + (inner if thumb else b"") + bytes(n))[:n]
        out += b"\xff\xe1" + struct.pack(">H", n + 2) + body
        left -= n
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(64))
    out += b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return _fill(out, size, b"\xff\xd9")


def _riff_webp(chunk: bytes, payload: bytes, size: int) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(payload)) + payload
    return _fill(b"RIFF" + struct.pack("<I", max(size, len(body) + 8) - 8) + body, size)


def webp_vp8x(width: int, height: int, size: int = 0) -> bytes:
    dims = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff_webp(b"VP8X", b"\x00\x00\x00\x00" + dims, size)


def webp_vp8l(width: int, height: int, size: int = 0) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return _riff_webp(b"VP8L", b"\x2f" + struct.pack("<I", bits) + bytes(8), size)


def webp_vp8(width: int, height: int, size: int = 0) -> bytes:
    frame = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(8)
    return _riff_webp(b"VP8 ", frame, size)


def gif(width: int, height: int, size: int = 0) -> bytes:
    return _fill(b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00", size, b";")


def bmp(width: int, height: int, size: int = 0) -> bytes:
    head = b"BM" + struct.pack("<IHHI", max(size, 54), 0, 0, 54)
    return _fill(head + struct.pack("<IiiHH", 40, width, height, 1, 24) + bytes(24), size)


BUILDERS: dict[str, Callable[..., bytes]] = {
    "png": png,
    "jpeg": jpeg,
    "webp-vp8x": webp_vp8x,
    "webp-vp8l": webp_vp8l,
    "webp-vp8": webp_vp8,
    "gif": gif,
    "bmp": bmp,
}

# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (1024, 768), (768, 1024), (9000, 300)])
def test_every_format_gives_its_width_and_height(kind: str, width: int, height: int) -> None:
    found = image_size(BUILDERS[kind](width, height))
    assert found == (kind.split("-")[0], width, height)


def test_a_real_png_is_measured() -> None:
    assert image_size(real_png(64, 36, (1, 2, 3))) == ("png", 64, 36)


def test_largest_sizes_each_format_can_hold() -> None:
    assert image_size(webp_vp8x(2**24, 2**24)) == ("webp", 2**24, 2**24)
    assert image_size(webp_vp8l(16384, 16384)) == ("webp", 16384, 16384)
    assert image_size(gif(65535, 65535)) == ("gif", 65535, 65535)
    assert image_size(png(2**31 - 1, 1)) == ("png", 2**31 - 1, 1)


def test_a_top_down_bmp_has_a_positive_height() -> None:
    assert image_size(bmp(640, -480)) == ("bmp", 640, 480)


def test_a_jpeg_is_measured_past_a_large_exif_segment() -> None:
    data = jpeg(4000, 3000, exif=40_000)
    assert image_size(data) == ("jpeg", 4000, 3000)
    first = image_size(data[:4096])
    assert isinstance(first, NeedMore)
    assert 40_000 < first.total <= 40_200  # the segment after APP1: just past it
    second = image_size(data[: first.total])
    assert isinstance(second, NeedMore)  # a DQT comes before the SOF
    assert second.total - first.total < 100
    assert image_size(data[: first.total + 1024]) == ("jpeg", 4000, 3000)


def test_a_jpeg_beyond_64_kib_of_app_segments_asks_for_more_than_that() -> None:
    data = jpeg(4000, 3000, exif=150_000)
    found = image_size(data[:65536])
    assert isinstance(found, NeedMore)
    assert found.total > 65536  # so a caller capped at 64 KiB stops there
    assert image_size(data) == ("jpeg", 4000, 3000)


def test_the_exif_thumbnail_is_not_mistaken_for_the_image() -> None:
    assert image_size(jpeg(4000, 3000, exif=5_000, thumb=True)) == ("jpeg", 4000, 3000)


@pytest.mark.parametrize("kind", BUILDERS)
def test_every_truncation_asks_for_more_or_gives_the_answer(kind: str) -> None:
    data = BUILDERS[kind](300, 200)
    for cut in range(len(data)):
        found = image_size(data[:cut])
        assert (
            found is None
            or found == (kind.split("-")[0], 300, 200)
            or (isinstance(found, NeedMore) and found.total > cut)
        )


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world",
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IDAT", b"x" * 20),  # no IHDR first
        png(0, 10),  # zero is not a size
        b"\xff\xd8\xff\xd9",  # SOI then EOI: no frame
        b"\xff\xd8\xff\xda\x00\x02",  # scan before any frame
        b"\xff\xd8\x00\x00\x00\x00",  # not a marker
        b"\xff\xd8\xff\xe1\x00\x01" + bytes(20),  # segment length below 2
        b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(30),  # no VP8 start code
        b"RIFF\x00\x00\x00\x00WEBPALPH" + bytes(30),
        b"BM" + bytes(12) + struct.pack("<I", 7) + bytes(20),  # unknown DIB header
    ],
)
def test_garbage_and_malformed_headers_give_none(head: bytes) -> None:
    assert image_size(head) is None


# ------------------------------------------------------------------ media types


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (png(10, 10), "png"),
        (jpeg(10, 10), "jpeg"),
        (webp_vp8(10, 10), "webp"),
        (gif(10, 10), "gif"),
        (bmp(10, 10), "bmp"),
        (jpeg(10, 10, exif=150_000)[:4096], "jpeg"),  # size unknown, still a JPEG
        (b"II*\x00" + bytes(8), "tiff"),
        (MP4_CLIP, "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "mov"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "avif"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
        (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "m4a"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "mkv"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "avi"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64" + bytes(10), "mp3"),
        (b"OggS\x00\x02", "ogg"),
        (b"fLaC\x00\x00", "flac"),
        (b"\xef\xbb\xbf\n  <!DOCTYPE html><html>", "html"),
        (b"<html><body>Access denied</body></html>", "html"),
        (b'{"error": "not found"}', None),
        (b"\xff\xf1\x50\x80", None),  # AAC ADTS, not MPEG audio layer I-III
        (b"", None),
    ],
)
def test_sniff_names_the_media_type(head: bytes, fmt: str | None) -> None:
    assert sniff(head) == fmt
    assert fmt is None or fmt in KINDS


# ------------------------------------------------------------------ data: URIs


def test_a_base64_data_uri_is_decoded_and_measured() -> None:
    data = png(9000, 300, size=5000)
    found = measure_data_uri("data:image/png;base64," + base64.b64encode(data).decode())
    assert found == Measurement("png", "image/png", 5000, 9000, 300)


def test_a_percent_encoded_data_uri_is_measured() -> None:
    text = "".join(f"%{b:02X}" for b in gif(12, 34))
    assert measure_data_uri(f"data:image/gif,{text}") == Measurement(
        "gif", "image/gif", len(gif(12, 34)), 12, 34
    )


@pytest.mark.parametrize(
    ("uri", "failure"),
    [
        ("data:image/png;base64,iVBORw0KG!!!", "not valid base64"),
        ("data:image/png;base64,iVBORw0", "not valid base64"),  # bad padding
        ("data:image/png;base64", "no comma"),
    ],
)
def test_a_broken_data_uri_says_what_is_wrong(uri: str, failure: str) -> None:
    found = measure_data_uri(uri)
    assert found.failure is not None
    assert failure in found.failure


# ------------------------------------------------------------------ fuzzing

_PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    b"GIF89a",
    b"GIF87a",
    b"\xff\xd8",
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe1",
    b"\xff\xd8\xff\xc0",
    b"RIFF\x00\x00\x00\x00WEBPVP8X",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"BM",
    b"\x00\x00\x00\x18ftyp",
    b"\x1a\x45\xdf\xa3",
    b"RIFF",
    b"\xff\xfb",
]
_VALID = [build(300, 200) for build in BUILDERS.values()] + [jpeg(300, 200, exif=3000)]


def _well_formed(found: object, head: bytes) -> bool:
    if found is None:
        return True
    if isinstance(found, NeedMore):
        return found.total > len(head)
    assert isinstance(found, tuple)
    fmt, width, height = found
    return fmt in KINDS and width > 0 and height > 0


@settings(max_examples=1500, deadline=None)
@given(prefix=st.sampled_from(_PREFIXES), rest=st.binary(max_size=300))
@example(prefix=b"\xff\xd8", rest=b"\xff" * 300)
@example(prefix=b"\xff\xd8", rest=b"\xff\x01" * 150)
def test_arbitrary_bytes_never_raise(prefix: bytes, rest: bytes) -> None:
    head = prefix + rest
    assert _well_formed(image_size(head), head)
    assert sniff(head) in {*KINDS, None}


@settings(max_examples=1500, deadline=None)
@given(data=st.data(), base=st.sampled_from(_VALID))
def test_mutated_and_cut_headers_never_raise(data: st.DataObject, base: bytes) -> None:
    head = bytearray(base[: data.draw(st.integers(0, len(base)))])
    for _ in range(data.draw(st.integers(0, 4))):
        if head:
            head[data.draw(st.integers(0, len(head) - 1))] = data.draw(st.integers(0, 255))
    assert _well_formed(image_size(bytes(head)), bytes(head))
    assert sniff(bytes(head)) in {*KINDS, None}


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_any_data_uri_text_is_measured_or_refused_without_raising(text: str) -> None:
    for uri in (f"data:{text}", f"data:image/png;base64,{text}"):
        found = measure_data_uri(uri)
        assert isinstance(found, Measurement)
