"""The Zigbee2MQTT adapter's receive step against the wire contract's, in one run.

    python bench/zigbee2mqtt.py [--rounds N] [--calls N] [--json]

Times, in microseconds a message (median over the rounds, the cases interleaved round
by round so they see the same machine load):

- ``z2m_change``: an Aqara door contact's state whose ``contact`` flips every message
  (a telemetry message of seven readings and a door event);
- ``z2m_repeat``: the same state again (readings only: Zigbee2MQTT repeats the whole
  state in every message);
- ``contract_telemetry``: ``hub.protocol.decode_json`` of a wire-contract telemetry
  message with the same six numbers, what a device that speaks the contract costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report  # noqa: E402
from hub.config import Zigbee2MQTTAdapter  # noqa: E402
from hub.ingest.adapters.zigbee2mqtt import Zigbee2MQTT  # noqa: E402
from hub.protocol import Kind, decode_json  # noqa: E402

TOPIC = "zigbee2mqtt/12-1-203/door"


def cases(now: datetime) -> dict[str, Callable[[int], Any]]:
    adapter = Zigbee2MQTT(Zigbee2MQTTAdapter(kind="zigbee2mqtt",
                                             devices={"12-1-203/door": "door-1"}))
    state = {"battery": 100, "voltage": 3005, "contact": True, "linkquality": 120,
             "device_temperature": 25, "power_outage_count": 6,
             "last_seen": now.isoformat(timespec="milliseconds")}
    closed = json.dumps(state).encode()
    opened = json.dumps({**state, "contact": False, "linkquality": 118}).encode()
    readings = [{"metric": k, "value": v} for k, v in state.items() if k != "last_seen"
                and not isinstance(v, bool)]
    contract = json.dumps({"v": 1, "device": "door-1", "seq": 5, "ts": now.isoformat(),
                           "readings": readings}).encode()
    return {
        "z2m_change": lambda i: adapter.translate(TOPIC, opened if i % 2 else closed, now),
        "z2m_repeat": lambda i: adapter.translate(TOPIC, closed, now),
        "contract_telemetry": lambda i: decode_json(Kind.TELEMETRY, contract, "door-1"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    todo = cases(datetime.now(UTC))
    runs: dict[str, list[float]] = {k: [] for k in todo}
    for _ in range(a.rounds):
        for name, f in todo.items():
            t0 = time.perf_counter()
            for i in range(a.calls):
                f(i)
            runs[name].append((time.perf_counter() - t0) / a.calls * 1e6)
    out: dict[str, Any] = {f"{k}_us": round(statistics.median(v), 2) for k, v in runs.items()}
    out["rounds"], out["calls"] = a.rounds, a.calls
    report(out, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
