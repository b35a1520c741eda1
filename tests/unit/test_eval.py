"""Scoring of the evaluation harness, and the clip layouts it reads (no real footage)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hub.domain import AlarmState
from hubtools.eval import (
    Clip,
    Event,
    FallTruth,
    ObjectTruth,
    clip_frames,
    iter_frames,
    load_manifest,
    onsets,
    score_falls,
    score_obstruction,
    summarise_falls,
)

F, C = AlarmState.FIRING, AlarmState.CLEARED


def clip(**kw) -> Clip:
    base = {"name": "c", "kind": "fall", "source": Path("x.mp4"), "fps": 10.0}
    base.update(kw)
    return Clip(**base)


def test_onsets_ignore_severity_updates_but_count_refires() -> None:
    ev = [Event(1, "fall", "a", F), Event(2, "fall", "a", F), Event(3, "fall", "a", C),
          Event(4, "fall", "a", F), Event(5, "firelane", "z", F)]
    assert [e.t for e in onsets(ev, "fall")] == [1, 4]


def test_fall_found_inside_window_and_time_counted_from_landing() -> None:
    c = clip(falls=[FallTruth(10.0, 11.0, 20.0)])
    r = score_falls(c, [Event(12.5, "fall", "a", F)], duration=30.0)
    assert r["falls"] == [{"found": True, "time_to_alarm_s": 1.5, "alarm_t": 12.5}]
    assert r["false_alarms"] == 0
    # Window 10..25 s: 15 s of the 30 s lie outside it.
    assert r["seconds_outside_falls"] == 15.0


def test_alarm_outside_windows_is_false_and_late_alarm_misses() -> None:
    c = clip(falls=[FallTruth(10.0, 11.0, 20.0)])
    r = score_falls(c, [Event(3.0, "fall", "a", F), Event(26.0, "fall", "b", F)], 30.0)
    assert r["falls"][0]["found"] is False
    assert r["false_alarms"] == 2


def test_still_down_at_end_window_runs_to_the_end_of_held_footage() -> None:
    c = clip(falls=[FallTruth(5.0, 6.0, None)], still_down_at_end=True)
    r = score_falls(c, [Event(36.0, "fall", "a", F)], duration=40.0)
    assert r["falls"][0]["found"] is True


def test_two_falls_need_two_alarms() -> None:
    c = clip(falls=[FallTruth(10, 11, None), FallTruth(12, 13, None)])
    r = score_falls(c, [Event(12, "fall", "a", F)], 30.0)
    assert [f["found"] for f in r["falls"]] == [True, False]


def test_summary_rates() -> None:
    fall = clip(falls=[FallTruth(10, 11, 20)])
    adl = clip(name="adl", kind="adl")
    rows = [(fall, score_falls(fall, [Event(12, "fall", "a", F)], 30.0)),
            (adl, score_falls(adl, [Event(100, "fall", "x", F)], 3600.0 - 15.0))]
    s = summarise_falls(rows)
    assert s["sensitivity"] == 1.0 and s["specificity"] == 0.0
    assert s["false_alarms"] == 1 and s["false_alarms_per_hour"] == 1.0
    assert s["median_time_to_alarm_s"] == 1.0


def test_obstruction_deadline_and_false_alarms_on_clear_footage() -> None:
    from hub.config import ZoneConfig

    z = ZoneConfig(name="lane", polygon=[(0, 0), (1, 0), (1, 1)], dwell_s=10)
    c = clip(kind="obstruction", zones=[z], objects=[ObjectTruth(11.0, None)])
    ok = score_obstruction(c, [Event(27.0, "firelane", "k", F)], 40.0)
    assert ok["objects"] == [{"found": True, "time_to_alarm_s": 16.0}]
    late = score_obstruction(c, [Event(31.5, "firelane", "k", F)], 40.0)
    assert late["objects"][0]["found"] is False
    early = score_obstruction(c, [Event(5.0, "firelane", "k", F)], 40.0)
    assert early["false_alarms"] == 1
    clear = clip(kind="adl", zones=[z])
    assert score_obstruction(clear, [Event(5.0, "firelane", "k", F)], 40.0)["false_alarms"] == 1
    assert score_obstruction(clip(), [], 40.0) is None  # no zone: nothing to score


def _video(path: Path, n: int, fps: float) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), i % 256, np.uint8))
    w.release()


def test_manifest_clips_subsampled_and_held(tmp_path: Path) -> None:
    _video(tmp_path / "a.avi", 30, 10.0)
    (tmp_path / "manifest.json").write_text(json.dumps([{
        "name": "a", "file": "a.avi", "fps": 10.0, "kind": "fall",
        "events": [{"type": "fall", "t_onset": 1.0, "t_on_floor": 1.5, "t_floor_end": None,
                    "still_down_at_end": True}],
        "zones": [{"name": "lane", "kind": "fire_lane", "dwell_s": 10,
                   "polygon_norm": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}],
    }]))
    [c] = load_manifest(tmp_path / "manifest.json")
    assert c.still_down_at_end and c.zones[0].dwell_s == 10
    ts = [t for t, _ in iter_frames(c, 5.0)]
    assert ts == [i / 5 for i in range(15)]  # 3 s at 5 fps out of 10 fps
    held = [t for t, _, h in clip_frames(c, 5.0, hold_s=2.0) if h]
    assert len(held) == 10 and held[-1] == 2.8 + 2.0


def test_ur_fall_folder_layout_with_labels(tmp_path: Path) -> None:
    for name, n in (("fall-01-cam0-rgb", 40), ("adl-01-cam0-rgb", 20)):
        d = tmp_path / name
        d.mkdir()
        for i in range(n):
            cv2.imwrite(str(d / f"{name}-{i + 1:03d}.png"), np.zeros((24, 32, 3), np.uint8))
    # URFD style: sequence, frame, label (-1 not lying, 0 falling, 1 lying), ...
    rows = [f"fall-01,{i},{-1 if i < 10 else (0 if i < 16 else 1)}" for i in range(1, 41)]
    (tmp_path / "urfall-cam0-falls.csv").write_text("\n".join(rows))
    clips = {c.name: c for c in load_manifest(tmp_path)}
    fall = clips["fall-01-cam0-rgb"]
    assert fall.kind == "fall" and clips["adl-01-cam0-rgb"].kind == "adl"
    f = fall.falls[0]
    assert (f.t_onset, f.t_on_floor, f.t_floor_end) == (9 / 30, 15 / 30, None)
    assert fall.still_down_at_end
    assert len(list(iter_frames(fall, 5.0))) == 7  # 40 frames at 30 fps, every 6th


def _row(found: list[bool], false: int) -> tuple[dict, None]:
    return ({"falls": [{"found": f, "time_to_alarm_s": 1.0 if f else None} for f in found],
             "false_alarms": false, "seconds_outside_falls": 60.0}, None)


def test_leave_one_source_out_chooses_on_the_other_sources_only() -> None:
    from hubtools.eval import VARIANTS, _out_of_sample

    a, b = VARIANTS[0], VARIANTS[1]
    clips = [clip(name="a1", group="A", falls=[FallTruth(0, 1, None)]),
             clip(name="b1", group="B", falls=[FallTruth(0, 1, None)]),
             clip(name="c1", group="C", falls=[FallTruth(0, 1, None)])]
    # Variant b finds A's and B's falls but misses C's with a false alarm. Left out A
    # (or B): the default scores 1 on the rest, b 0; left out C: b scores 2, the default 0.
    results = {a.name: {"a1": _row([False], 0), "b1": _row([False], 0), "c1": _row([True], 0)},
               b.name: {"a1": _row([True], 0), "b1": _row([True], 0), "c1": _row([False], 1)}}
    out = _out_of_sample(clips, (a, b), results, {})
    assert out["chosen_variant"] == {"A": a.name, "B": a.name, "C": b.name}
    # Scored: A with the default (missed), B with the default (missed), C with b (missed, 1 FA).
    assert out["fall"]["found"] == 0 and out["fall"]["false_alarms"] == 1
    assert out["variants_in_sample"][b.name]["found"] == 2


def test_pose_recordings_round_trip_within_a_quarter_pixel(tmp_path: Path) -> None:
    from hub.vision.people import Person
    from hubtools import poserec

    k = np.random.default_rng(0).uniform(0, 600, (17, 3)).astype(np.float32)
    k[:, 2] = 0.7312
    p = Person((10.3, 20.6, 200.1, 400.9), 0.8765, k)
    rec = poserec.ClipPoses((640, 480), {0.2: [p], 0.4: []},
                            [(0.4, ((1.0, 2.0, 300.0, 400.0),), [p])])
    f = tmp_path / "r.npz"
    poserec.save(f, {"c": rec}, [{"name": "c"}])
    clips, truth = poserec.load(f)
    assert truth == [{"name": "c"}]
    got = clips["c"]
    assert got.size == (640, 480) and sorted(got.frames) == [0.2, 0.4] and got.frames[0.4] == []
    q = got.frames[0.2][0]
    assert np.allclose(q.box, p.box, atol=0.125) and abs(q.score - p.score) < 1e-4
    assert np.allclose(q.keypoints[:, :2], k[:, :2], atol=0.125)
    assert got.rotated_at(0.4, ((1.5, 2.0, 301.0, 400.0),)) is not None  # about the same
    assert got.rotated_at(0.4, ((200.0, 2.0, 500.0, 400.0),)) is None  # another region


def test_hub_eval_takes_its_own_options_and_refuses_a_missing_recording(tmp_path: Path,
                                                                        capsys) -> None:
    from hub.cli import main

    assert main(["eval", "--replay", str(tmp_path / "none.npz")]) == 2
    assert "none.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # neither a manifest nor a recording
        main(["eval"])
    assert e.value.code == 2
