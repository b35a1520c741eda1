"""Network camera sources, pure: credentials from the environment and masked in what is
shown, and a live stream that stalls, ends or cannot be decoded, timed by an injected
clock to the second."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edge.camera import (
    CameraAgent,
    CameraError,
    FrameSource,
    StreamTimer,
    expand_source,
    redact,
)
from hub.config import CameraConfig
from hub.services import Broker

HIK_MAIN = "rtsp://admin:Hik:12345@10.1.2.3:554/Streaming/Channels/101"


def test_redact_masks_the_password_only() -> None:
    assert redact(HIK_MAIN) == "rtsp://admin:***@10.1.2.3:554/Streaming/Channels/101"
    dahua = "rtsp://op:p@ss@10.1.2.4:554/cam/realmonitor?channel=1&subtype=1"
    assert redact(dahua) == "rtsp://op:***@10.1.2.4:554/cam/realmonitor?channel=1&subtype=1"
    for shown_as_is in ("rtsp://10.1.2.3/live", "rtsp://viewer@10.1.2.3/live",
                        "/srv/clips/lane.mp4", "/dev/video0", "0"):
        assert redact(shown_as_is) == shown_as_is


def test_credentials_come_from_the_environment() -> None:
    env = {"CAM_USER": "admin", "CAM_PASS": "Hik:12345"}
    src = "rtsp://${CAM_USER}:${CAM_PASS}@10.1.2.3:554/Streaming/Channels/101"
    assert expand_source("cam-1", src, env) == HIK_MAIN
    assert expand_source("cam-1", "rtsp://u:pa$$1@h/s", {}) == "rtsp://u:pa$1@h/s"
    # Files and devices are not templates.
    assert expand_source("cam-1", "/srv/$weird/clip.mp4", {}) == "/srv/$weird/clip.mp4"
    with pytest.raises(ValueError, match="cam-1.*CAM_PASS, which is not set") as e:
        expand_source("cam-1", src, {"CAM_USER": "admin"})
    assert "Hik" not in str(e.value)
    with pytest.raises(ValueError, match=r"write a literal \$ as \$\$"):
        expand_source("cam-1", "rtsp://u:pa$1@h/s", {})


def test_an_agent_whose_credentials_are_not_set_fails_at_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("K1_NOT_SET", raising=False)
    cam = CameraConfig(source="rtsp://admin:${K1_NOT_SET}@10.1.2.3/Streaming/Channels/102")
    with pytest.raises(ValueError, match="K1_NOT_SET"):
        CameraAgent("cam-1", "site", cam, Broker("127.0.0.1", 1))


class FakeCapture:
    """A VideoCapture whose grab() takes the time ``script`` says and succeeds or not."""

    def __init__(self, clock: list[float], script: Callable[[int], tuple[float, bool]],
                 decodes: bool = True) -> None:
        self.clock, self.script, self.decodes = clock, script, decodes
        self.grabs = 0

    def grab(self) -> bool:
        took, ok = self.script(self.grabs)
        self.grabs += 1
        self.clock[0] += took
        return ok

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return (True, np.zeros((4, 4, 3), np.uint8)) if self.decodes else (False, None)


def _source(clock: list[float], timeout_s: float = 5.0) -> FrameSource:
    return FrameSource("rtsp://cam/live", fps=25, clock=lambda: clock[0],
                       monotonic=lambda: clock[0], timeout_s=timeout_s)


def test_a_read_that_hangs_until_the_timeout_is_a_stalled_stream() -> None:
    clock = [1000.0]
    # Three frames 0.04 s apart, then a read that FFmpeg's timeout ends after 5 s.
    cap = FakeCapture(clock, lambda i: (0.04, True) if i < 3 else (5.0, False))
    got = []
    with pytest.raises(CameraError, match=r"no frame for 5\.0 s \(stream stalled\)") as e:
        for frame in _source(clock)._live_frames(cap):  # type: ignore[arg-type]
            got.append(frame.ts)
    assert e.value.kind == "stalled"
    assert cap.grabs == 4 and got == pytest.approx([1000.04, 1000.08, 1000.12])


def test_a_read_shorter_than_the_timeout_is_retried() -> None:
    clock = [0.0]
    # One read ends early after 4.9 s (under the 5 s timeout), the next delivers.
    cap = FakeCapture(clock, lambda i: (4.9, False) if i == 0 else (0.04, i < 3))
    with pytest.raises(CameraError) as e:
        list(_source(clock)._live_frames(cap))  # type: ignore[arg-type]
    assert e.value.kind == "ended"  # five quick failures after frames 1 and 2
    assert cap.grabs == 3 + 5


def test_a_stream_that_ends_fails_after_five_grabs() -> None:
    clock = [0.0]
    cap = FakeCapture(clock, lambda i: (0.0, False))
    with pytest.raises(CameraError, match="stopped delivering") as e:
        list(_source(clock)._live_frames(cap))  # type: ignore[arg-type]
    assert e.value.kind == "ended" and cap.grabs == 5


def test_frames_that_cannot_be_decoded_fail_after_the_timeout() -> None:
    clock = [0.0]
    cap = FakeCapture(clock, lambda i: (0.25, True), decodes=False)
    src = _source(clock, timeout_s=2.0)
    with pytest.raises(CameraError, match=r"no decodable frame for 2\.0 s \(8 undecodable\)") as e:
        list(src._live_frames(cap))  # type: ignore[arg-type]
    assert e.value.kind == "undecodable" and src.undecodable == 8 and cap.grabs == 8


def test_a_stream_has_held_since_its_last_pause() -> None:
    t = StreamTimer()
    assert [t.frame(100 + i * 0.25, fps=4) for i in range(13)][-1] == 3.0
    # A pause of 1.5 s (over max(1 s, 3 frames of 0.25 s)) starts it over.
    assert t.frame(104.5, fps=4) == 0.0
    assert t.frame(105.5, fps=4) == 1.0  # 1 s is not over the limit
    t.restart()
    assert t.frame(200.0, fps=4) == 0.0


def test_a_slow_rate_asked_by_the_hub_is_not_a_pause() -> None:
    t = StreamTimer()
    # The hub asked for 0.5 frames a second: frames 2 s apart are a steady stream
    # (a limit taken from the site file's 2 fps, 1.5 s, would never let it recover).
    assert [t.frame(10.0 + 2 * i, fps=0.5) for i in range(3)] == [0.0, 2.0, 4.0]
    assert t.frame(20.0, fps=0.5) == 10.0  # 6 s: three periods, the limit itself
    assert t.frame(28.5, fps=0.5) == 0.0
