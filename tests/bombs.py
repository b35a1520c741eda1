"""Decoder bombs for the tests: small files whose header claims a huge image.

Each is a real small image of its format with the size fields in its header
rewritten, so everything but the claimed size is well formed. ``spy_imdecode``
replaces ``cv2.imdecode`` with one that records its calls and refuses to decode any
bomb made here: a regression then fails a test instead of taking gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cv2
import numpy as np
import pytest

BIG = 20000
BOMBS: set[bytes] = set()


def small(fmt: str, w: int = 16, h: int = 12, params: tuple[int, ...] = ()) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (h, w, 3), np.uint8)
    if fmt == ".webp" and not params:
        params = (cv2.IMWRITE_WEBP_QUALITY, 80)  # lossy (VP8); 101 is lossless (VP8L)
    ok, buf = cv2.imencode(fmt, img, list(params))
    assert ok
    return buf.tobytes()


def _bomb(b: bytes | bytearray) -> bytes:
    BOMBS.add(bytes(b))
    return bytes(b)


def jpeg_bomb(w: int = BIG, h: int = BIG) -> bytes:
    """A small JPEG whose SOF0 header is rewritten to claim ``w`` x ``h``."""
    b = bytearray(small(".jpg"))
    i = b.index(b"\xff\xc0")
    struct.pack_into(">HH", b, i + 5, h, w)
    return _bomb(b)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(w: int = BIG, h: int = BIG) -> bytes:
    """A well-formed PNG (IHDR, an IDAT of a few rows, IEND) claiming ``w`` x ``h``."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(w, 4096)), 9)
    return _bomb(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                 + _chunk(b"IEND", b""))


def webp_bomb(w: int = 16383, h: int = 16383) -> bytes:
    """A lossy WebP claiming the largest size VP8 can state."""
    b = bytearray(small(".webp"))
    assert b[12:16] == b"VP8 ", b[12:16]
    struct.pack_into("<HH", b, 26, w, h)
    return _bomb(b)


def bmp_bomb(w: int = BIG, h: int = BIG) -> bytes:
    b = bytearray(small(".bmp"))
    struct.pack_into("<ii", b, 18, w, h)
    return _bomb(b)


def spy_imdecode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace ``cv2.imdecode``; returns the list of input lengths it is called with."""
    real = cv2.imdecode
    seen: list[int] = []

    def spy(buf: Any, flags: int) -> Any:
        seen.append(len(buf))
        if bytes(buf) in BOMBS:
            raise AssertionError("cv2.imdecode was called on a decoder bomb")
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", spy)
    return seen
