"""Operators' decisions become labelled samples that ``hub eval`` scores.

Two fall incidents with event clips (written by the clip encoder from footage: a real
person's picture, bus.jpg from the ultralytics wheel, tipping over onto a floor, and
the same floor with the person standing): the operator registers the first
(confirmed) and cancels the second as a false alarm. ``hub samples export`` writes both
with a manifest; ``hub eval`` on the export reports both clips, the confirmed fall
found and no fall alarm on the other.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera import encode_jpeg
from hub.clock import ManualClock
from hub.domain import Alarm, AlarmState, Category, Severity
from hub.vision import clipstore
from hub.vision.clips import ClipFrame, encode_mp4
from tests.integration.alerting import GRID1, MICRO, pool_for, service

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def footage(tmp: Path, fall: bool) -> list[np.ndarray]:
    from hubtools.demo_media import fall_frames

    rng = np.random.default_rng(5)
    floor = cv2.GaussianBlur(rng.integers(70, 150, (576, 768, 3), dtype=np.uint8), (15, 15), 0)
    bg = tmp / "floor.avi"
    out = cv2.VideoWriter(str(bg), cv2.VideoWriter_fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(100):
        out.write(floor)
    out.release()
    frames = list(fall_frames(bg, seconds=9.0, start_s=0.0))
    # Without the fall: the first second (standing) repeated.
    return frames if fall else frames[:10] * 9


def write_clip(data: Path, frames: list[np.ndarray], ts: datetime, key: str) -> dict[str, str]:
    rel = clipstore.clip_path(Category.FALL, "cam-b3", ts, key)
    start = ts - timedelta(seconds=6)
    cf = []
    for i, img in enumerate(frames):
        jpeg, w, h = encode_jpeg(img, 80, 960)
        cf.append(ClipFrame(start + timedelta(seconds=i / 10), jpeg, w, h))
    assert encode_mp4(cf, data / rel) == len(frames)
    end = start + timedelta(seconds=9)
    return {"path": rel, "from": start.isoformat(), "to": end.isoformat(), "at": ts.isoformat()}


def test_two_decisions_export_as_samples_that_hub_eval_scores(db_url: str, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from hubtools import samples
    from hubtools.eval import run_eval

    data = tmp_path / "data"
    fell = footage(tmp_path, fall=True)
    stood = footage(tmp_path, fall=False)
    ids = {}
    with pool_for(db_url) as pool:
        svc = service(pool, ManualClock(T0 + timedelta(minutes=1)), data_dir=data)
        for name, frames, dt in (("fell", fell, 0), ("stood", stood, 60)):
            ts = T0 + timedelta(seconds=dt)
            clip = write_clip(data, frames, ts, name)
            (res,) = svc.apply_now([Alarm(
                rule="fall", category=Category.FALL, severity=Severity.MAJOR,
                state=AlarmState.FIRING, dedup_key=f"fall:cam-b3:{name}:{T0:%H%M%S}", ts=ts,
                title="有人跌倒", grid_code=MICRO, device_id="cam-b3",
                evidence={"time_down_s": 1.5, "clip": clip})])
            ids[name] = res.incident.id
        svc.transition(ids["fell"], "register", "op-1", reason="看到老人倒地")
        svc.transition(ids["stood"], "cancel", "op-1", reason="false alarm: 人站着")
        since = T0 - timedelta(minutes=1)
        with pool.connection() as conn:
            summary = samples.export(conn, data, since, tmp_path / "export", grid=GRID1)
            assert samples.export(conn, data, since, tmp_path / "other",
                                  grid="11010500100299")["samples"] == 0
    assert summary["samples"] >= 2 and summary["in_manifest"] >= 2
    # The command line does the same (hub samples export --since DATE DIR).
    from hub.cli import main as hub_main

    assert hub_main(["samples", "export", "--since", since.isoformat(), "--grid", GRID1,
                     "--database-url", db_url, "--data-dir", str(data),
                     str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli/manifest.json").is_file()
    assert len(list((tmp_path / "cli/clips").glob("*.mp4"))) == summary["samples"]
    listed = {r["incident_id"]: r for r in
              json.loads((tmp_path / "export/samples.json").read_text(encoding="utf-8"))}
    assert listed[ids["fell"]]["decision"] == "confirmed"
    assert listed[ids["stood"]]["decision"] == "false_alarm"
    assert listed[ids["stood"]]["reason"] == "false alarm: 人站着"
    assert listed[ids["fell"]]["evidence"] == {"time_down_s": 1.5}
    assert listed[ids["fell"]]["alarm_t"] == 6.0
    manifest = json.loads((tmp_path / "export/manifest.json").read_text(encoding="utf-8"))
    mine = [r for r in manifest if r["name"] in (f"incident-{ids['fell']}",
                                                 f"incident-{ids['stood']}")]
    fell_rec = next(r for r in mine if r["name"] == f"incident-{ids['fell']}")
    assert fell_rec["kind"] == "fall" and fell_rec["events"][0]["t_on_floor"] == 4.5
    assert next(r for r in mine if r["kind"] == "adl")["events"] == []
    (tmp_path / "export/mine.json").write_text(json.dumps(mine), encoding="utf-8")

    report = run_eval(tmp_path / "export/mine.json", backend="torch", threads=2)
    rows = {r["name"]: r for r in report["clips"]}
    assert set(rows) == {f"incident-{ids['fell']}", f"incident-{ids['stood']}"}
    assert rows[f"incident-{ids['fell']}"]["fall"]["falls"][0]["found"], rows
    assert rows[f"incident-{ids['stood']}"]["fall"]["false_alarms"] == 0, rows
    assert report["fall"]["falls"] == 1 and report["fall"]["found"] == 1
    assert report["fall"]["specificity"] == 1.0
