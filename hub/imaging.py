"""Guarded image decoding: the size in the header is checked before any pixel is.

A compressed image says in its header how large it is, and a decoder allocates that
much before it looks at the data: a 1,870-byte JPEG whose SOF claims 20000x20000 made
``cv2.imdecode`` allocate 1.2 GB and spend 14 s filling it with grey, and a PNG of a
few hundred kilobytes does the same. So every decode of bytes that came from outside
the hub (a camera's frame, a worker's photo, a data set's file) goes through
:func:`decode_image`, which reads width and height from the header with
:func:`read_header` (a few bytes, no decoding), refuses anything over the caller's
pixel limit or other than the declared size, and only then calls OpenCV.

Only formats whose header this module can read are decoded at all (JPEG, PNG, WebP,
BMP): OpenCV picks its decoder by the file's magic bytes, so a TIFF or a PPM handed
to a "photo" upload would otherwise reach a decoder nobody sized.

Pure apart from the counter: no logging here, because the caller knows who sent the
image (the device, the user) and logs the rejection with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter

REJECTED = Counter(
    "hub_image_rejected_total",
    "Images refused before (or at) decoding, by where they came from and why",
    ["source", "reason"],
)

FORMATS = frozenset({"jpeg", "png", "webp", "bmp"})

# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic):
# each carries the frame's height and width. C4 (DHT), C8 (JPG) and CC (DAC) are not.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
                  0xCE, 0xCF})
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class ImageRejected(ValueError):
    """An image that will not be decoded; ``reason`` is a stable label for counters:
    ``unsupported``, ``bad_header``, ``too_large``, ``size_mismatch``,
    ``decode_error``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ImageHeader:
    format: str  # jpeg | png | webp | bmp
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """Format, width and height from the first bytes of an image, without decoding.

    Raises :class:`ImageRejected` (``unsupported`` or ``bad_header``) when the bytes
    are not an image of a known format or its header cannot be read."""
    if data[:3] == b"\xff\xd8\xff":
        w, h = _jpeg_size(data)
        fmt = "jpeg"
    elif data[:8] == _PNG_SIG:
        w, h = _png_size(data)
        fmt = "png"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        w, h = _webp_size(data)
        fmt = "webp"
    elif data[:2] == b"BM":
        w, h = _bmp_size(data)
        fmt = "bmp"
    else:
        raise ImageRejected("unsupported", "not a JPEG, PNG, WebP or BMP image")
    if w <= 0 or h <= 0:
        raise ImageRejected("bad_header", f"{fmt} header gives a size of {w}x{h}")
    return ImageHeader(fmt, w, h)


def decode_image(
    data: bytes,
    *,
    source: str,
    max_pixels: int,
    expect: tuple[int, int] | None = None,
    formats: frozenset[str] = FORMATS,
    flags: int = cv2.IMREAD_COLOR,
    reduce_to: int | None = None,
) -> tuple[np.ndarray, ImageHeader]:
    """Decode ``data`` with OpenCV once its header shows it is small enough.

    ``max_pixels`` bounds width x height as the header states it; ``expect`` is the
    (width, height) the sender declared (a camera's frame header), which the image
    must have exactly; ``formats`` the formats this caller takes. ``flags`` go to
    ``cv2.imdecode``. ``reduce_to``: the caller will shrink the image to this long
    side anyway, so a JPEG is decoded at 1/2, 1/4 or 1/8 scale where that still
    leaves at least this much (libjpeg scales in its DCT: a 12-megapixel photo then
    costs a sixteenth of the memory). Every refusal counts in
    ``hub_image_rejected_total{source, reason}`` and raises :class:`ImageRejected`;
    the caller logs it with the device or user."""
    try:
        hdr = read_header(data)
        if hdr.format not in formats:
            raise ImageRejected("unsupported", f"{hdr.format} images are not taken here")
        if expect is not None and (hdr.width, hdr.height) != expect:
            raise ImageRejected("size_mismatch", f"declared {expect[0]}x{expect[1]}, the "
                                f"{hdr.format} header says {hdr.width}x{hdr.height}")
        if hdr.pixels > max_pixels:
            raise ImageRejected("too_large", f"{hdr.width}x{hdr.height} is {hdr.pixels} pixels,"
                                f" more than the limit of {max_pixels}")
        if reduce_to is not None and hdr.format == "jpeg" and flags == cv2.IMREAD_COLOR:
            flags = _reduced_flags(max(hdr.width, hdr.height), reduce_to)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        # A decoder never yields more pixels than the header it was sized from (EXIF
        # rotation swaps the sides, a reduced decode shrinks them); anything else means
        # the header reader and OpenCV disagree about the file, so it is not used.
        if img is None or img.size == 0 or img.shape[0] * img.shape[1] > hdr.pixels:
            raise ImageRejected("decode_error", f"the {hdr.format} image could not be decoded")
    except ImageRejected as e:
        REJECTED.labels(source, e.reason).inc()
        raise
    return img, hdr


def read_image_file(path: Path, *, source: str, max_pixels: int,
                    max_bytes: int = 256 * 1024 * 1024,
                    flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """``cv2.imread`` for a file that came from outside (a downloaded data set):
    read, size-checked and decoded through :func:`decode_image`."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        REJECTED.labels(source, "too_large").inc()
        raise ImageRejected("too_large", f"{path.name} is over {max_bytes} bytes")
    return decode_image(data, source=source, max_pixels=max_pixels, flags=flags)[0]


def _reduced_flags(long_side: int, reduce_to: int) -> int:
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if long_side // factor >= reduce_to:
            return flag
    return cv2.IMREAD_COLOR


# ------------------------------------------------------------------ header readers


def _u16be(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 2], "big")


def _jpeg_size(b: bytes) -> tuple[int, int]:
    # Walk the marker segments from SOI to the first SOF; every segment before it
    # (APPn with EXIF and its thumbnail, DQT, DHT, ...) is skipped by its length, so a
    # thumbnail's own SOF inside APP1 is never mistaken for the image's. libjpeg takes
    # the first SOF and refuses a second one, so the first is the size it allocates.
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            raise ImageRejected("bad_header", f"JPEG has no marker at byte {i}")
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        code = b[i]
        i += 1
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if code in (0xD9, 0xDA):  # EOI or start of scan before any SOF
            raise ImageRejected("bad_header", "JPEG has no frame header (SOF) before its data")
        if i + 2 > n:
            break
        seglen = _u16be(b, i)
        if seglen < 2:
            raise ImageRejected("bad_header", f"JPEG segment length {seglen} at byte {i}")
        if code in _SOF:
            if seglen < 8 or i + 7 > n:
                break
            # length(2) precision(1) height(2) width(2)
            return _u16be(b, i + 5), _u16be(b, i + 3)
        i += seglen
    raise ImageRejected("bad_header", "JPEG ends before its frame header (SOF)")


def _png_size(b: bytes) -> tuple[int, int]:
    # The PNG specification puts IHDR first; libpng refuses a file where it is not.
    if len(b) < 24 or b[12:16] != b"IHDR":
        raise ImageRejected("bad_header", "PNG does not start with an IHDR chunk")
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def _webp_size(b: bytes) -> tuple[int, int]:
    chunk = b[12:16]
    if chunk == b"VP8 " and len(b) >= 30:
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit sides.
        if b[23:26] != b"\x9d\x01\x2a":
            raise ImageRejected("bad_header", "WebP VP8 frame has no start code")
        return (int.from_bytes(b[26:28], "little") & 0x3FFF,
                int.from_bytes(b[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and len(b) >= 25:
        if b[20] != 0x2F:
            raise ImageRejected("bad_header", "WebP VP8L stream has no signature")
        bits = int.from_bytes(b[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(b) >= 30:
        # Extended (alpha, animation): the canvas, which bounds every frame in it.
        return (int.from_bytes(b[24:27], "little") + 1,
                int.from_bytes(b[27:30], "little") + 1)
    raise ImageRejected("bad_header", f"WebP chunk {chunk!r} is not VP8, VP8L or VP8X")


def _bmp_size(b: bytes) -> tuple[int, int]:
    if len(b) < 26:
        raise ImageRejected("bad_header", "BMP header is truncated")
    dib = int.from_bytes(b[14:18], "little")
    if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        return int.from_bytes(b[18:20], "little"), int.from_bytes(b[20:22], "little")
    # A negative height means rows are stored top-down; the size is the same.
    return (int.from_bytes(b[18:22], "little", signed=True),
            abs(int.from_bytes(b[22:26], "little", signed=True)))
