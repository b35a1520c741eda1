"""What Python's cyclic garbage collector costs the ingest while a backlog is held.

The ingest keeps every validated message (a pydantic model and its readings: about a
dozen container objects) alive until its batch commits, and a saturated hub holds
tens of thousands of them. This measures the receive step (``_decode``) per message
while such a backlog builds, with the interpreter's default collector thresholds and
with :func:`hub.ingest.service.tune_gc` (what ingest processes run), each in a fresh
process since the settings are process-wide; several rounds, medians.

    python bench/ingest_gc.py --json [--backlog 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _child(mode: str, backlog: int) -> float:
    from hub.ingest.service import _decode, tune_gc
    from hub.protocol import Kind
    from hubtools import loadgen

    devices = [f"d{i:04d}" for i in range(100)]
    payloads = [(devices[i % 100], loadgen.telemetry_payload(devices[i % 100], i))
                for i in range(backlog)]
    if mode == "tuned":
        tune_gc()
    held = []
    t = time.perf_counter()
    for dev, p in payloads:
        held.append(_decode(Kind.TELEMETRY, p, dev))
    return (time.perf_counter() - t) / backlog * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backlog", type=int, default=20000, help="messages held, as in a backlog")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=["default", "tuned"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(_child(a.child, a.backlog))
        return 0
    runs: dict[str, list[float]] = {"default": [], "tuned": []}
    for _ in range(a.rounds):
        for mode in runs:  # alternate, so both see the same machine load
            out = subprocess.run([sys.executable, __file__, "--child", mode,
                                  "--backlog", str(a.backlog)],
                                 check=True, capture_output=True, text=True).stdout
            runs[mode].append(float(out))
    default, tuned = (statistics.median(runs[m]) for m in ("default", "tuned"))
    result = {"backlog": a.backlog, "decode_us_per_msg_default_gc": round(default, 1),
              "decode_us_per_msg_tuned_gc": round(tuned, 1),
              "speedup": round(default / tuned, 2),
              "runs": {m: [round(v, 1) for v in r] for m, r in runs.items()}}
    print(json.dumps(result) if a.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
