"""One camera's path from JPEG bytes to alarms: decode, check, gate, pose, rules.

No MQTT and no threads here (see :mod:`hub.vision.worker`), so the benchmark and the
tests drive exactly the code the worker runs. A bad frame raises
:class:`FrameRejected` with a stable ``reason`` for the counters; it never changes
the camera's state, so the next good frame carries on as if it had not come.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np

from hub import imaging
from hub.domain import Alarm
from hub.motion import MotionGate, small_grey
from hub.protocol import FrameMeta

# A camera whose resolution changes (reconfigured on site) is believed after this many
# consecutive frames of the new size; a few odd frames are rejected instead.
SIZE_CONFIRM_FRAMES = 10
# The site file's camera default (``CameraConfig.max_width``).
DEFAULT_MAX_WIDTH = 960


def frame_limit(max_width: int) -> tuple[int, int]:
    """The largest (width, height) a camera configured ``max_width`` wide sends: the
    edge scales every frame down to that width (``edge.camera.encode_jpeg``), and not
    even a portrait camera (9:16) makes frames more than twice as tall as wide."""
    return max_width, 2 * max_width


class FrameRejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Analyzer(Protocol):
    """The part of :class:`hub.vision.analyzer.CameraAnalyzer` the pipeline uses: the
    frames, and what the camera's rules want of the pose stage before each one."""

    def process(self, ts: datetime, frame_bgr: np.ndarray, people: list | None) -> list[Alarm]: ...
    def rebaseline(self, ts: datetime) -> None: ...
    def needs_still_frames(self, ts: datetime) -> bool: ...
    def needs_every_frame(self, ts: datetime) -> bool: ...


@dataclass(slots=True)
class PipelineStats:
    processed: int = 0
    pose_runs: int = 0
    pose_skipped: int = 0
    alarms: int = 0
    # Where a camera's time goes (seconds): JPEG decode and checks, the motion gate,
    # the pose model on whole frames; total_s holds these and the rules.
    decode_s: float = 0.0
    gate_s: float = 0.0
    pose_s: float = 0.0
    total_s: float = 0.0
    gate_reasons: dict[str, int] = field(default_factory=dict)


def decode_jpeg(jpeg: bytes, width: int, height: int) -> np.ndarray:
    """Decode a frame that its header declared ``width`` x ``height``.

    The JPEG's own SOF header must say the same before anything is decoded: the
    decoder allocates what the SOF claims, so a 2 KB frame claiming 20000x20000
    would otherwise cost 1.2 GB and seconds of a worker (a decoder bomb)."""
    # libjpeg pads a truncated image with grey and only warns, so check the end marker
    # first: a half-received frame must not look like a scene change to the rules.
    if not jpeg.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise FrameRejected("decode_error", "JPEG is truncated (no EOI marker)")
    try:
        frame, _ = imaging.decode_image(jpeg, source="frame", max_pixels=width * height,
                                        expect=(width, height), formats=frozenset({"jpeg"}))
    except imaging.ImageRejected as e:
        # The counters keep their labels: a header that does not match is the
        # size_mismatch it always was, anything unreadable a decode_error.
        reason = e.reason if e.reason == "size_mismatch" else "decode_error"
        raise FrameRejected(reason, e.detail) from None
    if frame.ndim != 3:
        raise FrameRejected("decode_error", "JPEG could not be decoded")
    return frame


class CameraPipeline:
    def __init__(
        self,
        camera_id: str,
        analyzer_factory: Callable[[], Analyzer],
        detect: Callable[[np.ndarray], list],
        gate: MotionGate | None = None,
        pose_min_interval_s: float = 0.2,
        max_width: int = DEFAULT_MAX_WIDTH,
    ) -> None:
        """``pose_min_interval_s``: the model runs at most this often per camera while
        things move. 0.2 s is the 5 analysed frames a second at which ``hub eval``
        measures the detectors: at 2.5 a second (0.4 s) the pipeline missed falls on
        short clips that the evaluated rate finds (measured with the earlier
        ``bench/vision.py`` mix of real clips between synthetic still stretches, since
        withdrawn; not re-measured on the all-real mix).
        ``max_width``: the camera's configured width (site file); larger frames are
        refused before decoding (:func:`frame_limit`)."""
        self.camera_id = camera_id
        self._factory = analyzer_factory
        self.analyzer = analyzer_factory()
        self.detect = detect
        self.gate = gate if gate is not None else MotionGate(keyframe_s=4.0)
        self.pose_min_interval_s = pose_min_interval_s
        self.max_size = frame_limit(max_width)
        self._last_pose: float | None = None
        self.size: tuple[int, int] | None = None
        self._new_size: tuple[int, int] | None = None
        self._new_size_count = 0
        self.last_ts: datetime | None = None
        self.stats = PipelineStats()

    def check(self, meta: FrameMeta, jpeg: bytes) -> np.ndarray:
        """Decode and validate one frame; raise FrameRejected when it is unusable."""
        if self.last_ts is not None and meta.ts < self.last_ts:
            raise FrameRejected("out_of_order", f"frame ts {meta.ts} is before {self.last_ts}")
        mw, mh = self.max_size
        if meta.width > mw or meta.height > mh:
            # The wire format allows 8192x8192 (200 MB decoded); this camera is
            # configured for less, so a larger frame is not decoded at all.
            raise FrameRejected("too_large", f"header says {meta.width}x{meta.height}, "
                                f"camera {self.camera_id} sends at most {mw}x{mh}")
        frame = decode_jpeg(jpeg, meta.width, meta.height)
        h, w = frame.shape[:2]
        if (w, h) != (meta.width, meta.height):
            raise FrameRejected(
                "size_mismatch", f"header says {meta.width}x{meta.height}, JPEG is {w}x{h}"
            )
        if self.size is None:
            self.size = (w, h)
        elif (w, h) != self.size:
            if self._new_size == (w, h):
                self._new_size_count += 1
            else:
                self._new_size, self._new_size_count = (w, h), 1
            if self._new_size_count < SIZE_CONFIRM_FRAMES:
                raise FrameRejected(
                    "size_changed", f"frame is {w}x{h}, the camera's frames are "
                    f"{self.size[0]}x{self.size[1]}"
                )
            # The camera really was reconfigured: zones are 0-1 so they still fit, but
            # every pixel model and track of the old size is void.
            self.size = (w, h)
            self.analyzer = self._factory()
            self.gate.reset()
            self._last_pose = None
        self._new_size, self._new_size_count = None, 0
        return frame

    def process(self, meta: FrameMeta, jpeg: bytes) -> list[Alarm]:
        t0 = time.perf_counter()
        frame = self.check(meta, jpeg)
        self.stats.decode_s += time.perf_counter() - t0
        return self.analyse(meta.ts, frame, t0)

    def analyse(self, ts: datetime, frame: np.ndarray, t0: float | None = None) -> list[Alarm]:
        t0 = time.perf_counter() if t0 is None else t0
        st = self.stats
        tg = time.perf_counter()
        small = small_grey(frame, self.gate.width)
        now = ts.timestamp()
        decision = self.gate.check_small(now, small, commit=False)
        st.gate_s += time.perf_counter() - tg
        reason = decision.reason
        if not decision.run and self.analyzer.needs_still_frames(ts):
            # Someone may be going down or is down: still frames get the model too (at
            # the capped rate), so a fall is confirmed on fresh poses.
            reason = "watching"
        run = reason != "still"
        if run and reason != "first" and self._last_pose is not None \
                and 0 <= now - self._last_pose < self.pose_min_interval_s - 1e-3:
            if self.analyzer.needs_every_frame(ts):
                # A fall waits for its confirmation (a second or two): every frame
                # gets the model, so the alarm is not late by the rate cap.
                reason = "confirming"
            else:
                # People do not move far in a fraction of a second: the model runs at
                # most every pose_min_interval_s per camera; the rules keep the last
                # people.
                run, reason = False, "rate"
        st.gate_reasons[reason] = st.gate_reasons.get(reason, 0) + 1
        people = None
        if run:
            self.gate.commit(now, small)
            self._last_pose = now
            tp = time.perf_counter()
            people = self.detect(frame)
            st.pose_s += time.perf_counter() - tp
            st.pose_runs += 1
        else:
            st.pose_skipped += 1
        alarms = self.analyzer.process(ts, frame, people)
        self.last_ts = ts
        st.processed += 1
        st.alarms += len(alarms)
        st.total_s += time.perf_counter() - t0
        return alarms

    def rebaseline(self, ts: datetime) -> None:
        self.analyzer.rebaseline(ts)
