"""The edge agent over a real broker: presence, Last Will, ordered store-and-forward
through a broker outage, seq numbers across restarts, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import EdgeAgent
from edge.config import DeviceSpec, EdgeConfig, Household, dump_edge_config
from edge.simulation import Emission
from hub.embedded import start_mosquitto
from hub.protocol import Event, Kind, Status, Telemetry, decode_json, parse_topic
from hub.services import Broker

REPO = Path(__file__).resolve().parents[2]


class Collector:
    """A subscriber with a persistent session (it keeps receiving across a broker
    restart) that decodes what it gets with the wire contract."""

    def __init__(self, b: Broker, site: str, client_id: str) -> None:
        self.msgs: list[tuple[str, object, bool]] = []
        self.lock = threading.Lock()
        self.site = site
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(f"sc/v1/{site}/#", qos=1)
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.c.connect(b.host, b.port, clean_start=False, properties=props)
        self.c.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        t = parse_topic(m.topic)
        msg = decode_json(t.kind, m.payload, t.device)
        with self.lock:
            self.msgs.append((t.device, msg, bool(m.retain)))

    def of(self, kind: type) -> list[tuple[str, object, bool]]:
        with self.lock:
            return [x for x in self.msgs if isinstance(x[1], kind)]

    def wait(self, pred, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _config(b: Broker, site: str, tmp: Path, n: int = 3, **kw: object) -> EdgeConfig:
    devs = [DeviceSpec(id=f"sos-{i}", kind="sos", subject="s1", heartbeat_s=3600)
            for i in range(n)]
    return EdgeConfig(broker=f"mqtt://{b.host}:{b.port}", site=site, spool=tmp / "spool.sqlite",
                      households=[Household(id="s1", address="1-1-101")], devices=devs, **kw)


def _event(dev: str, i: int) -> Emission:
    return Emission(datetime.now(UTC), dev, "event", event="door_open", data={"i": i})


def test_presence_last_will_and_events(tmp_path: Path, broker: Broker, site_id: str) -> None:
    col = Collector(broker, site_id, f"col-{site_id}")
    agent = EdgeAgent(_config(broker, site_id, tmp_path), simulate=False).start()
    try:
        assert agent.wait_connected(10)
        devs = sorted(agent.links)
        assert col.wait(lambda: {d for d, m, _ in col.of(Status)} == set(devs))
        for i in range(20):
            agent.emit(_event(devs[0], i))
        assert agent.wait_drained(10)
        assert col.wait(lambda: len(col.of(Event)) == 20)
        evs = [m for _, m, _ in col.of(Event)]
        assert [e.data["i"] for e in evs] == list(range(20))  # type: ignore[attr-defined]
        seqs = [e.seq for e in evs]  # type: ignore[attr-defined]
        assert seqs == sorted(seqs) and len(set(seqs)) == 20
        # A device that fails: the broker publishes its Last Will, retained.
        agent.emit(Emission(datetime.now(UTC), devs[1], "control", event="offline"))
        assert col.wait(lambda: any(d == devs[1] and m.state == "offline"  # type: ignore[attr-defined]
                                    for d, m, _ in col.of(Status)))
        lwt = [m for d, m, _ in col.of(Status) if d == devs[1]]
        assert [s.state.value for s in lwt] == ["online", "offline"]  # type: ignore[attr-defined]
        assert lwt[1].reason == "lwt" and lwt[1].seq > lwt[0].seq  # type: ignore[attr-defined]
    finally:
        agent.stop()
        col.close()
    # Stopping publishes a retained offline status; a late subscriber sees it.
    late = Collector(broker, site_id, f"late-{site_id}")
    try:
        assert late.wait(lambda: len(late.of(Status)) == 3)
        st = {d: m for d, m, _ in late.of(Status)}
        assert all(r for _, _, r in late.of(Status))
        assert st[devs[0]].reason == "stopped" and st[devs[1]].reason == "lwt"  # type: ignore[attr-defined]
    finally:
        late.close()


def test_spool_replays_in_order_after_a_broker_outage(tmp_path: Path, site_id: str) -> None:
    b = start_mosquitto(tmp_path / "broker")
    col = Collector(b, site_id, f"col-{site_id}")
    agent = EdgeAgent(_config(b, site_id, tmp_path), simulate=False).start()
    sent: dict[str, list[int]] = defaultdict(list)
    try:
        assert agent.wait_connected(10)
        devs = sorted(agent.links)
        for i in range(30):
            for d in devs:
                sent[d].append(agent.emit(_event(d, i)) or 0)
        assert agent.wait_drained(10)
        b.stop()
        col.c.loop_stop()
        # While the broker is down everything is kept.
        for i in range(30, 130):
            for d in devs:
                sent[d].append(agent.emit(_event(d, i)) or 0)
        time.sleep(0.5)
        assert len(agent.spool) == 300
        b = start_mosquitto(tmp_path / "broker", port=b.port)
        col.c.loop_start()
        assert agent.wait_drained(30), agent.stats()
        assert col.wait(lambda: len({(d, m.seq) for d, m, _ in col.of(Event)}) == 390)  # type: ignore[attr-defined]
        for d in devs:
            got = [m.seq for dd, m, _ in col.of(Event) if dd == d]  # type: ignore[attr-defined]
            dedup = list(dict.fromkeys(got))
            assert dedup == sent[d], d  # every message, in order
        assert agent.stats()["connects"] >= 6
    finally:
        agent.stop()
        col.close()
        b.stop()


def test_seq_keeps_rising_across_agent_restarts(tmp_path: Path, broker: Broker,
                                                site_id: str) -> None:
    cfg = _config(broker, site_id, tmp_path, n=1)
    col = Collector(broker, site_id, f"col-{site_id}")
    a1 = EdgeAgent(cfg, simulate=False).start()
    s1 = [a1.emit(_event("sos-0", i)) for i in range(5)]
    assert a1.wait_drained(10)
    a1.stop()
    a2 = EdgeAgent(cfg, simulate=False).start()
    try:
        s2 = [a2.emit(_event("sos-0", i)) for i in range(5)]
        assert a2.wait_drained(10)
    finally:
        a2.stop()
        col.close()
    allseq = s1 + s2
    assert allseq == sorted(allseq) and len(set(allseq)) == 10  # type: ignore[type-var]


def test_messages_nobody_subscribes_to_are_held_until_the_hub_is_there(
        tmp_path: Path, broker: Broker, site_id: str) -> None:
    agent = EdgeAgent(_config(broker, site_id, tmp_path, n=1), simulate=False).start()
    col = None
    try:
        assert agent.wait_connected(10)
        seqs = [agent.emit(_event("sos-0", i)) for i in range(10)]
        time.sleep(1.5)
        assert len(agent.spool) == 10  # the broker acknowledged them to nobody
        col = Collector(broker, site_id, f"col-{site_id}")
        assert agent.wait_drained(30)
        assert col.wait(lambda: len(col.of(Event)) >= 10)
        got = list(dict.fromkeys(m.seq for _, m, _ in col.of(Event)))  # type: ignore[attr-defined]
        assert got == seqs
    finally:
        agent.stop()
        if col:
            col.close()


def test_cli_fast_forward_replays_a_scenario(tmp_path: Path, broker: Broker, site_id: str) -> None:
    col = Collector(broker, site_id, f"col-{site_id}")
    kinds = ("pir", "door", "water", "sos", "smoke", "wearable")
    cfg = EdgeConfig(
        broker=f"mqtt://{broker.host}:{broker.port}", site=site_id, spool=Path("spool.sqlite"),
        households=[Household(id="s1", address="3-2-501")],
        devices=[DeviceSpec(id=f"{k}-1", kind=k, subject="s1", heartbeat_s=60) for k in kinds],
        scenario=Path("sc.yaml"))
    (tmp_path / "sc.yaml").write_text(
        "start: 2026-11-23T09:00:00+08:00\nduration: 30m\nsteps:\n"
        "  - {at: +5m, action: sos, household: 3-2-501}\n"
        "  - {at: +10m, action: smoke, household: 3-2-501, for: 5m}\n")
    dump_edge_config(cfg, tmp_path / "edge.yaml")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "edge.cli", "--log-level", "WARNING", "run",
                          "--config", str(tmp_path / "edge.yaml"), "--fast-forward"],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    try:
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout.strip().splitlines()[-1])
        assert stats["emitted"] == stats["acked"] > 0 and stats["spooled"] == 0
        assert wall < 60  # 30 data minutes replayed much faster than real time
        assert col.wait(lambda: len(col.of(Event)) + len(col.of(Telemetry)) == stats["emitted"])
        evs = {m.type.value: m.ts for _, m, _ in col.of(Event)}  # type: ignore[attr-defined]
        assert evs["sos"] == datetime(2026, 11, 23, 1, 5, tzinfo=UTC)  # data time, not now
        assert "smoke_clear" in evs and "heartbeat" in evs
        assert all(d.endswith("-1") for d, _, _ in col.of(Telemetry))
    finally:
        col.close()


@pytest.mark.parametrize("bad", ["site: [", "site: x\ndevices: []\n", "site: x\nbogus: 1\n"])
def test_cli_rejects_bad_configs_clearly(tmp_path: Path, bad: str) -> None:
    p = tmp_path / "edge.yaml"
    p.write_text(bad)
    out = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(p)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    assert "edge config" in out.stderr and "Traceback" not in out.stderr


_ = Kind  # the wire kinds are what the collector decodes


def test_history_reaches_the_hub_in_time_slices(tmp_path: Path, broker: Broker,
                                                 site_id: str) -> None:
    """Across devices, no history message arrives after one more than a slice newer:
    the hub, clocked by data time, never sees a household's later past first."""
    from edge.agent import HISTORY_SLICE_S
    from edge.scenario import parse_scenario

    col = Collector(broker, site_id, f"col-{site_id}")
    kinds = ("pir", "door", "water", "smoke", "wearable")
    cfg = EdgeConfig(
        broker=f"mqtt://{broker.host}:{broker.port}", site=site_id,
        spool=tmp_path / "spool.sqlite", households=[Household(id="s1", address="1-1-101")],
        devices=[DeviceSpec(id=f"{k}-1", kind=k, subject="s1", heartbeat_s=600) for k in kinds])
    sc = parse_scenario({"history": [{"household": "1-1-101", "hours": 10}]})
    start = datetime.now(UTC)
    agent = EdgeAgent(cfg, scenario=sc, start=start).start()
    try:
        assert col.wait(lambda: any(m.ts >= start for _, m, _ in col.msgs  # type: ignore[attr-defined]
                                    if not isinstance(m, Status)), 60)
        past = [m.ts for _, m, _ in col.msgs if not isinstance(m, Status)  # type: ignore[attr-defined]
                and m.ts < start]  # type: ignore[attr-defined]
        assert len(past) > 300 and len({d for d, _, _ in col.msgs}) == len(kinds)
        newest = past[0]
        for ts in past:
            assert (newest - ts).total_seconds() <= HISTORY_SLICE_S
            newest = max(newest, ts)
    finally:
        agent.stop()
        col.close()
