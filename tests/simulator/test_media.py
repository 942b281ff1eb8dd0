"""The hosted outputs are genuine files: a decodable PNG and an MP4 with ftyp and moov."""

from __future__ import annotations

import struct
import zlib

from runcomfy_async.simulator._media import MP4_CLIP, PNG_SIZE, output_file


def read_png(data: bytes) -> tuple[int, int, bytes]:
    """Check signature, chunk CRCs and zlib stream; return (width, height, raw scanlines)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        pos += 12 + length
    assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour) == (8, 2)
    return width, height, zlib.decompress(chunks[1][1])


def test_the_png_is_valid_and_sized() -> None:
    width, height, raw = read_png(output_file("a cat", 0, "png"))
    assert (width, height) == PNG_SIZE
    assert len(raw) == height * (1 + 3 * width)


def test_the_png_colour_follows_the_prompt() -> None:
    assert output_file("a cat", 0, "png") == output_file("a cat", 0, "png")
    assert output_file("a cat", 0, "png") != output_file("a dog", 0, "png")
    assert output_file("a cat", 0, "png") != output_file("a cat", 1, "png")


def test_the_mp4_has_ftyp_then_moov_and_mdat() -> None:
    assert output_file("x", 0, "mp4") == MP4_CLIP
    boxes, pos = [], 0
    while pos < len(MP4_CLIP):
        size, kind = struct.unpack(">I4s", MP4_CLIP[pos : pos + 8])
        boxes.append(kind)
        pos += size
    assert pos == len(MP4_CLIP)
    assert boxes[0] == b"ftyp"
    assert b"moov" in boxes
    assert b"mdat" in boxes
    assert 500 < len(MP4_CLIP) < 4000
