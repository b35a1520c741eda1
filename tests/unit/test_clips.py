"""Event clips: the camera ring's bounds, the clip window, the recorder's decisions
(injected frame times and monotonic times, to the second), the encoder's output and
the retention purge's choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from hub.config import ClipsConfig
from hub.domain import Alarm, AlarmState, Severity
from hub.vision import clipstore
from hub.vision.clips import (
    LATE_S,
    PENDING_MAX,
    ClipFrame,
    ClipRecorder,
    ClipWriter,
    FrameRing,
    PendingClip,
    clip_window,
    encode_mp4,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def frame(s: float, size: int = 100) -> ClipFrame:
    return ClipFrame(at(s), b"x" * size, 32, 24)


def alarm(s: float, state: AlarmState = AlarmState.FIRING, key: str = "fall:cam-1:1",
          camera: str = "cam-1") -> Alarm:
    return Alarm(rule="fall", category="fall", severity=Severity.MAJOR, state=state,
                 dedup_key=key, ts=at(s), title="fall", device_id=camera,
                 evidence={"time_down_s": 1.5})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ ring


def test_the_ring_keeps_at_most_its_span_of_frame_time() -> None:
    ring = FrameRing(span_s=10, max_bytes=10**9)
    for s in range(31):
        ring.add(frame(s))
    assert [f.ts for f in ring.frames] == [at(s) for s in range(20, 31)]  # 20..30: 10 s
    assert ring.bytes == 11 * 100 and ring.evicted_by_bytes == 0


def test_the_ring_keeps_at_most_its_bytes_and_counts_what_that_dropped() -> None:
    ring = FrameRing(span_s=60, max_bytes=500)
    for s in range(8):
        ring.add(frame(s, size=100))
    assert [f.ts for f in ring.frames] == [at(s) for s in range(3, 8)]
    assert ring.bytes == 500 and ring.evicted_by_bytes == 3
    ring.add(frame(9, size=501))  # larger than the whole ring: nothing of it is kept
    assert len(ring) == 0 and ring.bytes == 0


def test_the_ring_ignores_a_frame_older_than_its_newest() -> None:
    ring = FrameRing(span_s=60, max_bytes=10**6)
    ring.add(frame(5))
    ring.add(frame(4))
    assert [f.ts for f in ring.frames] == [at(5)]


def test_the_clip_window_is_pre_before_and_post_after_the_alarm() -> None:
    assert clip_window(at(100), 10, 20) == (at(90), at(120))
    assert clip_window(at(100), 0, 0) == (at(100), at(100))


# ------------------------------------------------------------------ recorder


def recorder(**kw: float) -> tuple[ClipRecorder, list[PendingClip]]:
    out: list[PendingClip] = []
    cfg = ClipsConfig(**{"pre_s": 10, "post_s": 20, **kw})
    return ClipRecorder(cfg, out.append), out


def test_a_firing_alarm_gets_the_frames_from_pre_before_to_post_after() -> None:
    rec, out = recorder()
    for s in range(0, 23):  # frames arrive ahead of the analysis: 21, 22 are there
        rec.on_frame("cam-1", frame(s))
    a = rec.on_alarm(alarm(20), now=1000.0)
    clip = a.evidence["clip"]
    assert clip["path"] == "clips/fall/cam-1/20260301T080020000000-fall.mp4"
    assert clip["from"] == at(10).isoformat() and clip["to"] == at(40).isoformat()
    assert clip["at"] == at(20).isoformat()
    assert a.evidence["time_down_s"] == 1.5  # the rule's numbers stay
    for s in range(23, 40):
        rec.on_frame("cam-1", frame(s))
    assert out == []  # 39 s: one second short of the window's end
    rec.on_frame("cam-1", frame(40))
    assert len(out) == 1
    assert [f.ts for f in out[0].frames] == [at(s) for s in range(10, 41)]
    rec.on_frame("cam-1", frame(41))
    assert len(out) == 1  # sent once


def test_a_repeat_of_a_firing_alarm_names_the_same_clip_and_a_new_episode_a_new_one() -> None:
    rec, out = recorder(pre_s=2, post_s=2)
    for s in range(0, 5):
        rec.on_frame("cam-1", frame(s))
    first = rec.on_alarm(alarm(4), now=0.0)
    again = rec.on_alarm(replace_severity(alarm(5)), now=1.0)  # severity raised
    assert again.evidence["clip"] == first.evidence["clip"]
    for s in range(5, 8):
        rec.on_frame("cam-1", frame(s))
    assert len(out) == 1
    rec.on_alarm(alarm(8, AlarmState.CLEARED), now=2.0)
    refired = rec.on_alarm(alarm(9), now=3.0)
    assert refired.evidence["clip"]["path"] != first.evidence["clip"]["path"]


def replace_severity(a: Alarm) -> Alarm:
    from dataclasses import replace

    return replace(a, severity=Severity.CRITICAL)


def test_a_camera_that_goes_quiet_gets_its_clip_written_late_with_what_it_sent() -> None:
    rec, out = recorder()
    for s in range(0, 26):
        rec.on_frame("cam-1", frame(s))
    rec.on_alarm(alarm(20), now=500.0)
    rec.due(500.0 + 20 + LATE_S - 1)
    assert out == []
    rec.due(500.0 + 20 + LATE_S)
    assert len(out) == 1 and out[0].frames[-1].ts == at(25) and out[0].frames[0].ts == at(10)


def test_a_window_already_received_is_sent_at_once() -> None:
    rec, out = recorder(pre_s=1, post_s=1)
    for s in range(0, 6):  # the analysis is 2 s behind the frames received
        rec.on_frame("cam-1", frame(s))
    rec.on_alarm(alarm(3), now=0.0)
    assert [f.ts for f in out[0].frames] == [at(2), at(3), at(4)]


def test_a_clip_holds_at_most_clip_max_mb_and_says_it_was_cut() -> None:
    rec, out = recorder(pre_s=0, post_s=10, clip_max_mb=0.001)  # 1048 bytes
    rec.on_alarm(alarm(0), now=0.0)
    for s in range(0, 11):
        rec.on_frame("cam-1", frame(s, size=300))
    assert len(out[0].frames) == 3 and out[0].truncated


def test_a_camera_has_at_most_pending_max_clips_collecting_and_the_next_is_counted() -> None:
    rec, _ = recorder()
    before = sample("hub_vision_clips_total", camera="cam-9", result="too_many")
    for i in range(PENDING_MAX):
        a = rec.on_alarm(alarm(10, key=f"k{i}", camera="cam-9"), now=0.0)
        assert "clip" in a.evidence
    a = rec.on_alarm(alarm(10, key="k-extra", camera="cam-9"), now=0.0)
    assert "clip" not in a.evidence
    assert sample("hub_vision_clips_total", camera="cam-9", result="too_many") == before + 1


def test_an_alarm_without_a_camera_passes_untouched() -> None:
    rec, _ = recorder()
    a = alarm(1, camera="cam-1")
    from dataclasses import replace

    lone = replace(a, device_id=None)
    assert rec.on_alarm(lone, now=0.0) is lone


def test_a_full_encoder_queue_drops_the_clip_and_counts_it(tmp_path: Path) -> None:
    w = ClipWriter(ClipsConfig(queue=1), tmp_path)  # not started: nothing takes from it
    before = sample("hub_vision_clips_total", camera="cam-q", result="dropped")
    p = PendingClip("cam-q", "k", "clips/fall/cam-q/x.mp4", at(0), at(1), 0.0, 10**6)
    w.submit(p)
    w.submit(p)
    assert sample("hub_vision_clips_total", camera="cam-q", result="dropped") == before + 1


# ------------------------------------------------------------------ encoder


def jpeg_frame(s: float, i: int) -> ClipFrame:
    img = np.full((121, 161, 3), 60, np.uint8)  # odd sizes: yuv420p needs them even
    cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return ClipFrame(at(s), buf.tobytes(), 161, 121)


def test_the_clip_is_h264_yuv420p_with_its_index_first_and_the_frames_own_timing(
        tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    frames = [jpeg_frame(s * 0.5, i) for i, s in enumerate(range(21))]  # 0..10 s at 2 fps
    frames.insert(5, ClipFrame(at(2.2), b"\xff\xd8garbage\xff\xd9", 161, 121))
    bad0 = sample("hub_vision_clip_frames_bad_total", camera="cam-e")
    out = tmp_path / "c.mp4"
    assert encode_mp4(frames, out, camera="cam-e") == 21
    assert sample("hub_vision_clip_frames_bad_total", camera="cam-e") == bad0 + 1
    assert not out.with_name("c.mp4.part").exists()
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: playable while loading
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert (v.codec_context.width, v.codec_context.height) == (160, 120)
        pts = [float(f.pts * f.time_base) for f in c.decode(v)]
    assert len(pts) == 21
    assert pts[-1] - pts[0] == pytest.approx(10.0, abs=0.01)


def test_no_usable_frame_writes_no_file(tmp_path: Path) -> None:
    pytest.importorskip("av")
    out = tmp_path / "none.mp4"
    assert encode_mp4([ClipFrame(at(0), b"nope", 16, 16)], out) == 0
    assert not out.exists() and not out.with_name("none.mp4.part").exists()


# ------------------------------------------------------------------ retention


def stored(cat: str, days_old: float, size: int, partial: bool = False) -> clipstore.StoredClip:
    ts = at(0) - timedelta(days=days_old)
    rel = clipstore.clip_path(cat, "cam-1", ts, "r") + (clipstore.PART if partial else "")
    return clipstore.StoredClip(rel, cat, ts, size, partial)


def test_clip_paths_parse_back_to_category_and_time() -> None:
    rel = clipstore.clip_path("fire_lane", "cam/../x", at(1.5), "firelane")
    assert rel == "clips/fire_lane/cam_.._x/20260301T080001500000-firelane.mp4"
    c = clipstore.parse(rel, 7)
    assert c == clipstore.StoredClip(rel, "fire_lane", at(1.5), 7, False)
    assert clipstore.parse(rel + ".part", 7).partial  # type: ignore[union-attr]
    assert clipstore.parse("clips/fall/cam/notatime-x.mp4", 1) is None
    assert clipstore.parse("evidence/cam/a.jpg", 1) is None


def test_the_purge_takes_each_category_past_its_days_then_the_oldest_over_the_cap() -> None:
    now = at(0)
    fall_40 = stored("fall", 40, 10)
    fall_20 = stored("fall", 20, 10)
    lane_8 = stored("fire_lane", 8, 10)
    lane_6 = stored("fire_lane", 6, 10)
    crowd_1 = stored("crowding", 1, 10)
    clips = [fall_40, fall_20, lane_8, lane_6, crowd_1]
    gone = clipstore.to_purge(clips, now, 30, {"fire_lane": 7}, max_total_bytes=10**6)
    assert set(gone) == {fall_40, lane_8}
    # A cap of 20 bytes: of the 30 kept, the oldest (fall_20) goes first.
    gone = clipstore.to_purge(clips, now, 30, {"fire_lane": 7}, max_total_bytes=20)
    assert set(gone) == {fall_40, lane_8, fall_20}
    # To the second: 30 days exactly is kept, a second more is not.
    edge = stored("fall", 30, 1)
    later = stored("fall", 30 + 1 / 86400, 1)
    assert clipstore.to_purge([edge, later], now, 30, {}, 10**6) == [later]


def test_the_purge_removes_an_encoder_s_leftover_but_not_one_being_written(tmp_path: Path) -> None:
    now = at(0)
    fresh = stored("fall", 0, 5, partial=True)
    old = stored("fall", 2 / 24, 5, partial=True)  # two hours
    assert clipstore.to_purge([fresh, old], now, 30, {}, 10**6) == [old]
    assert clipstore.to_purge([fresh], now, 30, {}, 0) == []  # the cap spares it


def test_purge_removes_the_files_and_leaves_foreign_ones(tmp_path: Path) -> None:
    now = at(0)
    old = stored("fall", 40, 0)
    new = stored("fall", 1, 0)
    for c in (old, new):
        p = tmp_path / c.rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"v" * 100)
    (tmp_path / "clips" / "README").write_text("mine")
    n = clipstore.purge(tmp_path, now, 30, {}, 10**6)
    assert n == {"clips": 1, "clip_bytes": 100}
    assert not (tmp_path / old.rel).exists() and (tmp_path / new.rel).exists()
    assert (tmp_path / "clips" / "README").exists()
