"""Decoder bombs: an image whose header claims far more pixels than its bytes hold.

A decoder allocates what the header says before it reads the data, so a 1-2 KB JPEG
claiming 20000x20000 costs 1.2 GB and seconds. Every decode of outside bytes must
read the header first and refuse such an image before OpenCV sees it: frames against
the size the camera declared (and the site file allows), photos against a pixel cap.

``cv2.imdecode`` is replaced by a spy in these tests, so a regression shows as a
failed assertion ("decoded a bomb") instead of a machine out of memory.
"""

from __future__ import annotations

import resource
import struct
import time
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest

from hub.motion import MotionGate
from hub.protocol import FrameMeta
from hub.vision.pipeline import CameraPipeline, FrameRejected
from tests.bombs import bmp_bomb, jpeg_bomb, png_bomb, small, spy_imdecode, webp_bomb

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return spy_imdecode(monkeypatch)


def _pipe(**kw: Any) -> CameraPipeline:
    class An:
        def process(self, ts: datetime, frame: np.ndarray, people: Any) -> list:
            return []

        def rebaseline(self, ts: datetime) -> None: ...

        def needs_still_frames(self, ts: datetime) -> bool:
            return False

        def needs_every_frame(self, ts: datetime) -> bool:
            return False

    return CameraPipeline("cam", An, lambda f: [], MotionGate(), **kw)


def _meta(w: int, h: int) -> FrameMeta:
    return FrameMeta(device="cam", seq=1, ts=T0, width=w, height=h)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ frames


def test_decoder_bomb_frame_is_rejected_against_the_declared_size_before_decoding(
        decodes: list[int]) -> None:
    """The frame header declares 320x240, the JPEG's SOF claims 20000x20000."""
    p = _pipe()
    rss0 = _peak_rss_mb()
    t0 = time.perf_counter()
    with pytest.raises(FrameRejected) as e:
        p.check(_meta(320, 240), jpeg_bomb())
    assert time.perf_counter() - t0 < 1.0
    assert e.value.reason == "size_mismatch" and "20000x20000" in e.value.detail
    assert decodes == []  # refused from the header: nothing was decoded
    assert _peak_rss_mb() - rss0 < 100
    # A real frame of the declared size still decodes.
    good = small(".jpg", 320, 240)
    assert p.check(_meta(320, 240), good).shape == (240, 320, 3)


def test_decoder_bomb_frame_is_rejected_when_it_declares_more_than_the_camera_sends(
        decodes: list[int]) -> None:
    """Header and SOF agree on 8192x8192 (the wire format's bound), but this camera's
    site file says its frames are at most 960 wide."""
    bomb = jpeg_bomb(8192, 8192)
    p = _pipe(max_width=960)
    t0 = time.perf_counter()
    with pytest.raises(FrameRejected) as e:
        p.check(_meta(8192, 8192), bomb)
    assert time.perf_counter() - t0 < 1.0
    assert e.value.reason == "too_large"
    assert decodes == []
    # A portrait camera's 9:16 frame at the configured width is still taken.
    tall = small(".jpg", 540, 960)
    assert _pipe(max_width=540).check(_meta(540, 960), tall).shape == (960, 540, 3)


# ------------------------------------------------------------------ the one helper


@pytest.mark.parametrize("make", [jpeg_bomb, png_bomb, webp_bomb, bmp_bomb],
                         ids=["jpeg", "png", "webp", "bmp"])
def test_decoder_bomb_of_every_format_is_refused_by_the_guarded_decoder(
        make: Any, decodes: list[int]) -> None:
    from hub import imaging

    before = imaging.REJECTED.labels("test", "too_large")._value.get()
    t0 = time.perf_counter()
    with pytest.raises(imaging.ImageRejected) as e:
        imaging.decode_image(make(), source="test", max_pixels=40_000_000)
    assert time.perf_counter() - t0 < 1.0
    assert e.value.reason == "too_large"
    assert decodes == []
    assert imaging.REJECTED.labels("test", "too_large")._value.get() == before + 1


@pytest.mark.parametrize("ext,fmt", [(".jpg", "jpeg"), (".png", "png"), (".webp", "webp"),
                                     (".bmp", "bmp")])
def test_header_reader_agrees_with_opencv(ext: str, fmt: str, decodes: list[int]) -> None:
    from hub import imaging

    for w, h in ((1, 1), (16, 12), (641, 479), (1000, 3)):
        data = small(ext, w, h)
        hdr = imaging.read_header(data)
        assert (hdr.format, hdr.width, hdr.height) == (fmt, w, h)
        img, _ = imaging.decode_image(data, source="test", max_pixels=w * h)
        assert img.shape[:2] == (h, w)
    lossless = small(".webp", 9, 7, (cv2.IMWRITE_WEBP_QUALITY, 101))
    assert lossless[12:16] == b"VP8L"
    assert imaging.read_header(lossless) == imaging.ImageHeader("webp", 9, 7)


def test_a_jpeg_thumbnail_in_exif_is_not_taken_for_the_image_size() -> None:
    from hub import imaging

    thumb = small(".jpg", 8, 8)
    app1 = b"Exif\x00\x00" + thumb
    real = small(".jpg", 300, 200)
    data = real[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + real[2:]
    assert imaging.read_header(data) == imaging.ImageHeader("jpeg", 300, 200)


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0\x00", b"\xff\xd8\xff\xda\x00\x02",
    b"\x89PNG\r\n\x1a\n\x00\x00", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM\x00",
    b"II*\x00" + b"\x00" * 64,  # TIFF: OpenCV decodes it, nobody sized it
    b"P6\n20000 20000\n255\n",  # PPM header: the same
])
def test_unreadable_or_unknown_headers_are_refused(data: bytes, decodes: list[int]) -> None:
    from hub import imaging

    with pytest.raises(imaging.ImageRejected) as e:
        imaging.decode_image(data, source="test", max_pixels=10**9)
    assert e.value.reason in ("unsupported", "bad_header")
    assert decodes == []
