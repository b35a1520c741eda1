"""Video benchmarks: what the monitoring room's video costs the hub.

Sections (``--only NAME``, repeatable; all by default), each a function that returns
flat ``key: value`` figures, so another part of the video work adds its own section to
``SECTIONS`` without touching these:

* ``clips`` - event clips (hub/vision/clips.py) on real footage (``--media``, default
  /work/shared/media: every file its manifest names). Each source is read as a camera
  sends it: scaled to ``--max-width`` and JPEG-encoded at ``--quality`` by the edge's
  own ``encode_jpeg``, at ``--fps`` frames a second with every frame sent (no motion
  gate: the most a camera can put in its ring).

  - ``ring_buffer_mb_per_camera``: the JPEG bytes a camera's ring holds once full
    (the site file's ``clips.pre_s`` + 5 s of frames, capped at ``clips.buffer_mb``),
    median over the sources, with the largest source's figure
    (``ring_buffer_mb_per_camera_max``) and the Python heap the full ring takes as
    ``tracemalloc`` counts it (``ring_buffer_heap_mb_max``: the bytes plus the objects
    around them).
  - ``clip_write_ms_cpu``: per alarm, the time the clip writer's thread takes to decode
    and encode one clip of ``pre_s + post_s`` seconds (H.264, libx264 ``veryfast``, the
    site's ``crf``) on the CPU, median over ``--alarms`` alarms spread over the sources;
    ``clip_process_cpu_ms`` is the CPU time of the process in the same calls (libx264
    uses several threads), ``clip_mb``: the clips' median size.

    python bench/video.py --json [--media /work/shared/media] [--fps 5] [--alarms 9]

* ``live`` - live viewers of one camera beside streams at 1 fps (bench/liveview.py):
  ``live_view_viewers``, ``live_latency_p95_ms``, ``streams_at_1fps_with_viewers`` vs
  ``..._without_viewers`` (``--streams 40 --viewers 20 --live-seconds 10``).

The machine is shared: quote medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import liveview  # noqa: E402
from bench.common import report  # noqa: E402
from edge.camera import encode_jpeg  # noqa: E402
from hub.config import ClipsConfig  # noqa: E402
from hub.vision.clips import (  # noqa: E402
    MB,
    RING_SLACK_S,
    ClipFrame,
    ClipWriter,
    FrameRing,
    PendingClip,
)
from hub.vision.clipstore import clip_path  # noqa: E402

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def camera_frames(path: Path, fps: float, max_width: int, quality: int,
                  seconds: float | None = None) -> Iterator[ClipFrame]:
    """A source's frames as a camera at ``fps`` sends them, with their times; looped
    when ``seconds`` is longer than the file."""
    cap = cv2.VideoCapture(str(path))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(src_fps / fps))
    i = n = 0
    try:
        while seconds is None or n / fps < seconds:
            ok, img = cap.read()
            if not ok:
                if seconds is None or i == 0:
                    return
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            i += 1
            if (i - 1) % step:
                continue
            jpeg, w, h = encode_jpeg(img, quality, max_width)
            yield ClipFrame(T0 + timedelta(seconds=n / fps), jpeg, w, h)
            n += 1
    finally:
        cap.release()


def sources(media: Path) -> list[Path]:
    manifest = json.loads((media / "manifest.json").read_text(encoding="utf-8"))
    return [media / r["file"] for r in manifest if (media / r["file"]).is_file()]


def bench_clips(a: argparse.Namespace, cfg: ClipsConfig) -> dict[str, Any]:
    files = sources(Path(a.media))
    if not files:
        raise SystemExit(f"error: no footage listed in {a.media}/manifest.json")
    span = cfg.pre_s + RING_SLACK_S
    ring_mb: list[float] = []
    heap_mb: list[float] = []
    for f in files:
        frames = list(camera_frames(f, a.fps, a.max_width, a.quality, seconds=span + 2))
        tracemalloc.start()
        ring = FrameRing(span, int(cfg.buffer_mb * MB))
        base = tracemalloc.get_traced_memory()[0]
        for fr in frames:
            # A fresh copy, so the heap counted is the ring's own.
            ring.add(ClipFrame(fr.ts, bytes(bytearray(fr.jpeg)), fr.width, fr.height))
        heap = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        ring_mb.append(ring.bytes / MB)
        heap_mb.append(heap / MB)

    window = cfg.pre_s + cfg.post_s
    ms: list[float] = []
    cpu_ms: list[float] = []
    sizes: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        writer = ClipWriter(cfg, Path(tmp))
        for k in range(a.alarms):
            src = files[k % len(files)]
            frames = list(camera_frames(src, a.fps, a.max_width, a.quality, seconds=window))
            ts = T0 + timedelta(seconds=cfg.pre_s)
            p = PendingClip("bench", f"bench:{k}", clip_path("fall", "bench", ts, f"b{k}"),
                            frames[0].ts, frames[-1].ts, 0.0, int(cfg.clip_max_mb * MB), frames,
                            sum(len(fr.jpeg) for fr in frames))
            c0, t0 = time.process_time(), time.perf_counter()
            out = writer.write(p)
            ms.append((time.perf_counter() - t0) * 1000)
            cpu_ms.append((time.process_time() - c0) * 1000)
            assert out is not None, f"clip of {src.name} not written"
            sizes.append((Path(tmp) / out).stat().st_size / MB)
    return {
        "ring_buffer_mb_per_camera": round(statistics.median(ring_mb), 2),
        "ring_buffer_mb_per_camera_max": round(max(ring_mb), 2),
        "ring_buffer_heap_mb_max": round(max(heap_mb), 2),
        "ring_buffer_cap_mb": cfg.buffer_mb,
        "ring_span_s": span,
        "clip_write_ms_cpu": round(statistics.median(ms)),
        "clip_process_cpu_ms": round(statistics.median(cpu_ms)),
        "clip_seconds": window,
        "clip_mb": round(statistics.median(sizes), 2),
        "clip_sources": len(files),
        "clip_alarms": a.alarms,
    }


SECTIONS: dict[str, Callable[[argparse.Namespace, ClipsConfig], dict[str, Any]]] = {
    "clips": bench_clips,
    "live": liveview.bench_live,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--media", default="/work/shared/media", help="folder with manifest.json")
    p.add_argument("--fps", type=float, default=5.0, help="frames a second a camera sends")
    p.add_argument("--max-width", type=int, default=960, help="camera max_width (site file)")
    p.add_argument("--quality", type=int, default=80, help="camera jpeg_quality (site file)")
    p.add_argument("--alarms", type=int, default=9, help="clips written for the median")
    liveview.add_arguments(p)
    p.add_argument("--only", action="append", choices=sorted(SECTIONS),
                   help="run only this section (repeatable)")
    a = p.parse_args(argv)
    cfg = ClipsConfig()
    out: dict[str, Any] = {"fps": a.fps, "max_width": a.max_width, "jpeg_quality": a.quality,
                           "pre_s": cfg.pre_s, "post_s": cfg.post_s}
    for name in a.only or list(SECTIONS):
        out.update(SECTIONS[name](a, cfg))
    report(out, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
