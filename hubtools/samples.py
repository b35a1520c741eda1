"""Operators' decisions as labelled samples: ``hub samples export --since DATE DIR``.

An operator who registers (立案) a camera incident confirms it; one who cancels it
(作废, with a reason) calls it a false alarm. Every incident whose evidence names an
event clip (hub/vision/clips.py) and that got one of these decisions at or after
``--since`` is a sample: its clip, its evidence numbers and the decision. The export
writes, into DIR:

* ``clips/<name>.mp4``: each sample's clip re-timed to a constant ``--fps`` (the hub's
  clips keep a motion-gated camera's uneven frame times; ``hub eval`` reads a video by
  frame index);
* ``samples.json``: every sample, every category: decision, reason, who and when,
  camera, zone, the alarm's time in the clip and the evidence numbers;
* ``manifest.json``: the samples ``hub eval`` can score, in the project's manifest
  format. A confirmed fall is a ``fall`` clip whose fall starts a second before the
  person was down (the alarm's time less its ``time_down_s``), still down at the
  clip's end unless the incident was cleared inside it; a fall called false is an
  ``adl`` clip (any fall alarm on it is a false alarm). The footage's source
  (``source_repo``) is the camera, so ``hub eval --folds source`` leaves one camera
  out at a time. Fire-lane and crowding samples are in ``samples.json`` only: their
  dwell times (minutes) do not fit in a clip of seconds, so a replay of the clip
  could not raise their alarm.

The export reads what retention left: a clip already purged is reported and skipped.
It is an administrator's tool run where the hub's database and data directory are;
``--grid CODE`` keeps only the incidents under that grid unit, as a user scoped there
would see them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DECISIONS = {"register": "confirmed", "cancel": "false_alarm"}
FALL_S = 1.0  # a fall takes about this long from upright to down


@dataclass(frozen=True)
class Sample:
    incident_id: int
    category: str
    rule: str
    device_id: str | None
    zone: str | None
    grid_code: str | None
    decision: str  # confirmed | false_alarm
    reason: str | None
    decided_at: datetime
    decided_by: str
    clip: dict[str, str]
    evidence: dict[str, Any] = field(default_factory=dict)
    cleared_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"incident-{self.incident_id}"

    def alarm_t(self) -> float:
        """The alarm's time in seconds from the clip's start."""
        start = datetime.fromisoformat(self.clip["from"])
        at = datetime.fromisoformat(self.clip.get("at") or self.clip["from"])
        return max(0.0, (at - start).total_seconds())


def samples_since(conn: Any, since: datetime, grid: str = "") -> list[Sample]:
    """The incidents with a clip whose latest register/cancel is at or after ``since``."""
    rows = conn.execute(
        "SELECT i.id, i.category, i.rule, i.device_id, i.zone, i.grid_code, a.action,"
        " a.reason, a.at, a.actor, i.evidence, i.cleared_at"
        " FROM incidents i JOIN LATERAL ("
        "   SELECT action, reason, at, actor FROM audit"
        "   WHERE incident_id = i.id AND action IN ('register', 'cancel')"
        "   ORDER BY id DESC LIMIT 1) a ON true"
        " WHERE i.evidence ? 'clip' AND a.at >= %s AND coalesce(i.grid_code, '') LIKE %s"
        " ORDER BY a.at, i.id", (since, grid.replace("%", "") + "%")).fetchall()
    out = []
    for r in rows:
        ev = dict(r[10] or {})
        clip = ev.pop("clip", None)
        if not isinstance(clip, dict) or not isinstance(clip.get("path"), str):
            continue
        out.append(Sample(r[0], r[1], r[2], r[3], r[4], r[5], DECISIONS[r[6]], r[7], r[8],
                          r[9], {k: str(v) for k, v in clip.items()}, ev, r[11]))
    return out


def manifest_record(s: Sample, file: str, duration: float, fps: float, width: int,
                    height: int) -> dict[str, Any] | None:
    """The ``hub eval`` record of a sample, or None when hub eval cannot score its
    category from a clip (see the module's description)."""
    if s.category != "fall":
        return None
    rec: dict[str, Any] = {
        "name": s.name, "file": file, "fps": fps, "width": width, "height": height,
        "duration_s": round(duration, 2), "source_repo": f"camera:{s.device_id}",
        "set": "site", "decision": s.decision, "reason": s.reason,
    }
    if s.decision == "false_alarm":
        return {**rec, "kind": "adl", "events": []}
    t = s.alarm_t()
    down = float(s.evidence.get("time_down_s") or 0.0)
    on_floor = max(0.0, t - down)
    end: float | None = None
    if s.cleared_at is not None:
        got_up = (s.cleared_at - datetime.fromisoformat(s.clip["from"])).total_seconds()
        if on_floor < got_up < duration:
            end = round(got_up, 2)
    return {**rec, "kind": "fall", "events": [{
        "type": "fall", "t_onset": round(max(0.0, on_floor - FALL_S), 2),
        "t_on_floor": round(on_floor, 2), "t_floor_end": end,
        "still_down_at_end": end is None}]}


def constant_rate(src: Path, dst: Path, fps: float) -> tuple[int, float, int, int]:
    """Re-time ``src`` to ``fps`` frames a second (each tick shows the latest frame
    shown by then); returns (frames, duration_s, width, height)."""
    import av
    import numpy as np

    decoded: list[tuple[float, np.ndarray]] = []
    with av.open(str(src)) as c:
        for f in c.decode(c.streams.video[0]):
            if f.pts is None:
                continue
            decoded.append((float(f.pts * f.time_base), f.to_ndarray(format="bgr24")))
    if not decoded:
        raise ValueError(f"{src} holds no frame")
    t0 = decoded[0][0]
    span = decoded[-1][0] - t0
    h, w = decoded[0][1].shape[:2]
    n = int(span * fps) + 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dst), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        st = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": "20", "preset": "veryfast"}
        k = 0
        for i in range(n):
            t = t0 + i / fps
            while k + 1 < len(decoded) and decoded[k + 1][0] <= t + 1e-6:
                k += 1
            vf = av.VideoFrame.from_ndarray(decoded[k][1], format="bgr24")
            vf.pts = i
            for pkt in st.encode(vf):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return n, n / fps, w, h


def export(conn: Any, data_dir: Path, since: datetime, out: Path, fps: float = 10.0,
           grid: str = "") -> dict[str, Any]:
    """Write the samples decided since ``since`` into ``out``; returns a summary."""
    from hub.api.files import file_inside

    out.mkdir(parents=True, exist_ok=True)
    samples = samples_since(conn, since, grid)
    listed: list[dict[str, Any]] = []
    manifest: list[dict[str, Any]] = []
    missing = []
    for s in samples:
        src = file_inside(Path(data_dir), s.clip["path"])
        if src is None:
            missing.append(s.incident_id)
            log.warning("sample skipped: its clip is gone (past retention, or never written)",
                        extra={"incident": s.incident_id, "clip": s.clip["path"]})
            continue
        rel = f"clips/{s.name}.mp4"
        frames, duration, w, h = constant_rate(src, out / rel, fps)
        row = {**asdict(s), "file": rel, "alarm_t": round(s.alarm_t(), 2),
               "duration_s": round(duration, 2)}
        listed.append(row)
        rec = manifest_record(s, rel, duration, fps, w, h)
        if rec is not None:
            manifest.append(rec)
    (out / "samples.json").write_text(json.dumps(listed, indent=1, default=str, ensure_ascii=False),
                                      encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False),
                                       encoding="utf-8")
    return {"samples": len(listed), "in_manifest": len(manifest), "clip_missing": missing,
            "confirmed": sum(r["decision"] == "confirmed" for r in listed),
            "false_alarm": sum(r["decision"] == "false_alarm" for r in listed)}


def _date(v: str) -> datetime:
    d = datetime.fromisoformat(v)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def main(argv: list[str] | None = None, *, database_url: str = "",
         data_dir: Path = Path("var")) -> int:
    ap = argparse.ArgumentParser(prog="hub samples", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export", help="write the labelled samples and a hub eval manifest")
    p.add_argument("--since", type=_date, required=True, help="ISO date or time (UTC if bare)")
    p.add_argument("dir", type=Path)
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the exported clips")
    p.add_argument("--grid", default="", help="only incidents under this grid code")
    p.add_argument("--database-url", default=database_url)
    p.add_argument("--data-dir", type=Path, default=data_dir)
    a = ap.parse_args(argv)
    if not a.database_url:
        print("hub samples: no database (HUB_DATABASE_URL or --database-url)", file=sys.stderr)
        return 2
    import psycopg

    with psycopg.connect(a.database_url) as conn:
        summary = export(conn, a.data_dir, a.since, a.dir, a.fps, a.grid)
    print(json.dumps(summary))
    return 0
