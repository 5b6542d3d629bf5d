"""What an encoded image claims before anything decodes it: its size from the header, and whether it is whole.

The worker checks a frame with these before it goes to Triton, and Triton before it allocates a decode buffer:
a small PNG whose header claims 16000 x 16000 pixels, bytes that only start like a JPEG, or a JPEG cut short
are refused with a reason instead of being decoded (and rendered as if valid, or allocating gigabytes).
"""

from __future__ import annotations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC: the last 8 bytes of every whole PNG
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
# Start-of-frame markers (baseline, progressive, lossless, ...): they carry the picture's size. C4 (Huffman
# tables), C8 (reserved) and CC (arithmetic coding conditioning) share the range but are not frames.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 have no length field
JPEG_SOS = 0xDA


class BadImage(ValueError):
    """The bytes are not a whole JPEG or PNG; the message says why."""


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise BadImage("PNG without an IHDR header")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.endswith(PNG_END):
        raise BadImage("PNG cut short: it does not end with an IEND chunk")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise BadImage(f"JPEG marker expected at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE:
            i += 2
            continue
        if marker == JPEG_SOS:
            raise BadImage("JPEG scan before any frame header")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in JPEG_SOF:
            if length < 7 or i + 9 > len(data):
                raise BadImage("JPEG frame header cut short")
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            if not data.rstrip(b"\x00").endswith(JPEG_END):
                raise BadImage("JPEG cut short: it does not end with an end-of-image marker")
            return width, height
        if length < 2:
            raise BadImage(f"JPEG segment with length {length} at byte {i}")
        i += 2 + length
    raise BadImage("JPEG without a frame header (truncated or not a JPEG)")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) that a JPEG's or PNG's header declares; BadImage when the bytes are neither, or are cut
    short (a JPEG without its end-of-image marker, a PNG without its IEND chunk)."""
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(JPEG_START):
        return _jpeg_size(data)
    raise BadImage("neither a JPEG nor a PNG signature")
