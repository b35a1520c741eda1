"""Recorded pose results: what the model saw on each analysed frame of a clip, compact.

A recording lets the fall rule be re-run on a whole footage set in seconds, without the
footage and without the model: ``hub eval --export-poses FILE`` writes one (people of
the upright pass per frame, and every rotated "lying" look with the regions it was
asked about), ``hub eval --replay FILE`` scores the rules on it, and the tests use the
one in ``tests/data/`` as a regression guard.

Numbers are stored as int16: pixel coordinates in quarter pixels, scores and keypoint
confidences in 1/10000. That is well inside the model's own noise and keeps a 70-clip
set under a megabyte.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hub.vision.people import Person

PX = 4.0  # quarter pixels
CONF = 10000.0
WIDTH = 4 + 1 + 17 * 3  # box, score, keypoints
ROI_MATCH_IOU = 0.6  # a rotated look at regions this close to a recorded one saw the same


def _pack(people: Sequence[Person]) -> np.ndarray:
    a = np.zeros((len(people), WIDTH), np.int16)
    for i, p in enumerate(people):
        k = np.asarray(p.keypoints, np.float64)
        a[i, :4] = np.clip(np.round(np.asarray(p.box) * PX), -32768, 32767)
        a[i, 4] = round(float(p.score) * CONF)
        a[i, 5::3] = np.clip(np.round(k[:, 0] * PX), -32768, 32767)
        a[i, 6::3] = np.clip(np.round(k[:, 1] * PX), -32768, 32767)
        a[i, 7::3] = np.round(k[:, 2] * CONF)
    return a


def _unpack(a: np.ndarray) -> list[Person]:
    out = []
    for row in a.astype(np.float64):
        k = np.empty((17, 3), np.float32)
        k[:, 0] = row[5::3] / PX
        k[:, 1] = row[6::3] / PX
        k[:, 2] = row[7::3] / CONF
        out.append(Person(tuple(float(v) for v in row[:4] / PX), float(row[4] / CONF), k))  # type: ignore[arg-type]
    return out


Rois = tuple[tuple[float, float, float, float], ...]


@dataclass
class ClipPoses:
    """One clip's pose results: upright pass per frame time, rotated looks."""

    size: tuple[int, int]  # frame width, height
    frames: dict[float, list[Person]] = field(default_factory=dict)
    rotated: list[tuple[float, Rois, list[Person]]] = field(default_factory=list)

    def rotated_at(self, t: float, rois: Rois) -> list[Person] | None:
        """The recorded look at frame time ``t`` for (about) these regions, if any."""
        for rt, rr, people in self.rotated:
            if abs(rt - t) < 1e-3 and _same_rois(rr, rois):
                return people
        return None


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _same_rois(a: Rois, b: Rois) -> bool:
    return len(a) == len(b) and all(_iou(x, y) >= ROI_MATCH_IOU for x, y in zip(a, b, strict=True))


def save(path: Path, clips: dict[str, ClipPoses], truth: list[dict[str, Any]]) -> None:
    """One ``.npz`` with every clip's arrays and the ground truth (JSON) beside them."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"truth": truth, "clips": {}}
    for i, (name, c) in enumerate(sorted(clips.items())):
        times = sorted(c.frames)
        arrays[f"c{i}_t"] = np.asarray(times, np.float64)
        arrays[f"c{i}_n"] = np.asarray([len(c.frames[t]) for t in times], np.int16)
        arrays[f"c{i}_p"] = _cat([_pack(c.frames[t]) for t in times])
        arrays[f"c{i}_rt"] = np.asarray([r[0] for r in c.rotated], np.float64)
        arrays[f"c{i}_rn"] = np.asarray([len(r[1]) for r in c.rotated], np.int16)
        arrays[f"c{i}_rr"] = np.asarray([b for r in c.rotated for b in r[1]],
                                        np.float32).reshape(-1, 4)
        arrays[f"c{i}_rk"] = np.asarray([len(r[2]) for r in c.rotated], np.int16)
        arrays[f"c{i}_rp"] = _cat([_pack(r[2]) for r in c.rotated])
        meta["clips"][name] = {"index": i, "size": list(c.size)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, WIDTH), np.int16)


def load(path: Path) -> tuple[dict[str, ClipPoses], list[dict[str, Any]]]:
    """The clips' pose results and the ground truth records saved with them."""
    with np.load(Path(path), allow_pickle=False) as z:
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        clips: dict[str, ClipPoses] = {}
        for name, m in meta["clips"].items():
            i = m["index"]
            c = ClipPoses((int(m["size"][0]), int(m["size"][1])))
            people = _unpack(z[f"c{i}_p"])
            at = 0
            for t, n in zip(z[f"c{i}_t"].tolist(), z[f"c{i}_n"].tolist(), strict=True):
                c.frames[round(t, 4)] = people[at:at + n]
                at += n
            rpeople = _unpack(z[f"c{i}_rp"])
            rois = z[f"c{i}_rr"].tolist()
            ra = pa = 0
            for t, nr, nk in zip(z[f"c{i}_rt"].tolist(), z[f"c{i}_rn"].tolist(),
                                 z[f"c{i}_rk"].tolist(), strict=True):
                c.rotated.append((round(t, 4), tuple(tuple(b) for b in rois[ra:ra + nr]),  # type: ignore[misc]
                                  rpeople[pa:pa + nk]))
                ra += nr
                pa += nk
            clips[name] = c
    return clips, meta["truth"]
