"""Output file bytes: a genuine PNG per prompt colour, and a tiny genuine MP4 clip."""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib

PNG_SIZE = (64, 36)

# A 1 s, 64x36, 8 fps H.264 clip in an MP4 (ftyp + moov + mdat), made once with
# ffmpeg -f lavfi -i color=c=0x3366cc:s=64x36:r=8:d=1 -c:v libx264 -crf 51 -movflags +faststart
# so neither tests nor users need ffmpeg.
MP4_CLIP = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAOFbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAA"
    "A+gAAQAAAQAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAgAAAq90cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAA+gAAAAAAAAAAAAA"
    "AAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAEAAAAAkAAAAAAAkZWR0cwAAABxlbHN0"
    "AAAAAAAAAAEAAAPoAAAQAAABAAAAAAInbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAQABVxAAAAAAALWhk"
    "bHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAAB0m1pbmYAAAAUdm1oZAAAAAEAAAAAAAAA"
    "AAAAACRkaW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAZJzdGJsAAAAwnN0c2QAAAAAAAAAAQAAALJh"
    "dmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAEAAJABIAAAASAAAAAAAAAABFUxhdmM1OS4zNy4xMDAgbGlieDI2"
    "NAAAAAAAAAAAAAAAGP//AAAAOGF2Y0MBZAAK/+EAGmdkAAqscgREf58BEAAAAwAQAAADAQDxIlhGAQAHaOhDgZSy"
    "LP34+AAAAAAQcGFzcAAAAAEAAAABAAAAFGJ0cnQAAAAAAAADoAAAA6AAAAAYc3R0cwAAAAAAAAABAAAACAAACAAA"
    "AAAUc3RzcwAAAAAAAAABAAAAAQAAADhjdHRzAAAAAAAAAAUAAAABAAAQAAAAAAEAAEAAAAAAAQAAGAAAAAACAAAA"
    "AAAAAAMAAAgAAAAAHHN0c2MAAAAAAAAAAQAAAAEAAAAIAAAAAQAAADRzdHN6AAAAAAAAAAAAAAAIAAAAGgAAAA0A"
    "AAAMAAAADQAAAA0AAAANAAAADQAAAA0AAAAUc3RjbwAAAAAAAAABAAADtQAAAGJ1ZHRhAAAAWm1ldGEAAAAAAAAA"
    "IWhkbHIAAAAAAAAAAG1kaXJhcHBsAAAAAAAAAAAAAAAALWlsc3QAAAAlqXRvbwAAAB1kYXRhAAAAAQAAAABMYXZm"
    "NTkuMjcuMTAwAAAACGZyZWUAAAB8bWRhdAAAABZliIEAAh8QeZ/m7gLPXMB8A1YDhnpBAAAACUGaCO2IZ/8+IAAA"
    "AAhBnhBnEP+FgQAAAAkBnhgmiGf/kYAAAAAJAZ4YRohn/5GBAAAACQGeGI1IZ/+RgQAAAAkBnhitSGf/kYEAAAAJ"
    "AZ4YzUhn/5GB"
)

CONTENT_TYPES = {"png": "image/png", "mp4": "video/mp4"}


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG of one colour (8 bits per channel, no interlace)."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0 then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(row * height, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def output_file(text: str, index: int, extension: str) -> bytes:
    """The bytes of output `index`: a PNG coloured by a hash of `text`, or the MP4 clip."""
    if extension == "mp4":
        return MP4_CLIP
    digest = hashlib.sha256(f"{index}:{text}".encode()).digest()
    return png(*PNG_SIZE, (digest[0], digest[1], digest[2]))
