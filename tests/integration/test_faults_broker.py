"""Fault: the broker restarts while edge agents publish. The agents' spools keep what
the broker could not take and replay it; the hub's persistent session resumes.
Ends with stored == sent and no duplicates."""

from __future__ import annotations

import random
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from edge.agent import EdgeAgent
from edge.config import DeviceSpec, EdgeConfig
from edge.simulation import Emission
from hub.embedded import _sbin, start_mosquitto
from hub.ingest.service import Ingest
from hub.services import Broker
from hub.store import readings as store
from hubtools import loadgen

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("mosquitto") or _sbin("mosquitto")),
                       reason="needs mosquitto (persistence across a restart)"),
]


def _wait(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


class Feeder(threading.Thread):
    """Emits telemetry (1-20 readings, as real devices send them) and events for the
    agent's devices at a steady rate, recording what was sent by (device, seq)."""

    def __init__(self, agent: EdgeAgent, rate_per_device: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.agent, self.period = agent, 1 / rate_per_device
        self.rng = random.Random(seed)
        self.sent: dict[str, set[tuple[str, int]]] = {"telemetry": set(), "event": set()}
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            for d in self.agent.links:
                now = datetime.now(UTC)
                if self.rng.random() < 0.8:
                    n = self.rng.randint(1, 20)
                    e = Emission(now, d, "telemetry",
                                 tuple((f"m{j}", float(i + j), None) for j in range(n)))
                    self.sent["telemetry"].add((d, self.agent.emit(e) or 0))
                else:
                    e = Emission(now, d, "event", event="door_open", data={"i": i})
                    self.sent["event"].add((d, self.agent.emit(e) or 0))
            i += 1
            self.halt.wait(self.period)


def _agent(b: Broker, site_id: str, devs: list[str], spool: Path) -> EdgeAgent:
    cfg = EdgeConfig(broker=f"mqtt://{b.host}:{b.port}", site=site_id, spool=spool,
                     devices=[DeviceSpec(id=d, kind="wearable", heartbeat_s=3600) for d in devs])
    return EdgeAgent(cfg, simulate=False)


def test_broker_restart_while_agents_publish(tmp_path: Path, db_url: str, site_id: str) -> None:
    broker_dir = tmp_path / "broker"
    b = start_mosquitto(broker_dir)
    site = loadgen.make_site(site_id, 6)
    devs = [d.id for d in site.devices]
    ing = Ingest(db_url=db_url, broker=b, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, batch_wait_ms=20)
    ing.start()
    agents = [_agent(b, site_id, devs[:3], tmp_path / "a.sqlite"),
              _agent(b, site_id, devs[3:], tmp_path / "b.sqlite")]
    feeders = [Feeder(a, rate_per_device=25, seed=i) for i, a in enumerate(agents)]
    try:
        assert ing.wait_connected(10)
        for a in agents:
            a.start()
            assert a.wait_connected(10)
        for f in feeders:
            f.start()
        time.sleep(2)
        b.stop()  # SIGTERM: Mosquitto writes its persistence file and exits
        time.sleep(3)  # the agents go on; everything lands in their spools
        spooled = sum(len(a.spool) for a in agents)
        assert spooled > 100, "the outage should have left messages in the spools"
        b = start_mosquitto(broker_dir, port=b.port)
        time.sleep(2)
        for f in feeders:
            f.halt.set()
            f.join(5)
        assert all(a.wait_drained(60) for a in agents), [a.stats() for a in agents]
        sent = {"telemetry": set().union(*(f.sent["telemetry"] for f in feeders)),
                "event": set().union(*(f.sent["event"] for f in feeders))}
        n_sent = len(sent["telemetry"]) + len(sent["event"])

        def stored() -> dict[str, set[tuple[str, int]]]:
            with psycopg.connect(db_url) as c:
                return store.message_keys(c, devs)

        assert _wait(lambda: stored() == sent, 60), (n_sent, ing.stats())
        with psycopg.connect(db_url) as c:
            assert store.count_messages(c, devs) == n_sent
            assert store.duplicate_rows(c) == 0
            pres = store.presence(c, devs)
        assert all(p.state == "online" for p in pres.values())
        assert sum(a.stats()["connects"] for a in agents) >= 2 * len(devs)
    finally:
        for f in feeders:
            f.halt.set()
        for a in agents:
            a.stop()
        ing.stop()
        b.stop()
