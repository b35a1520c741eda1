"""Deterministic telemetry load for the ingest benchmark and the fault tests.

Every (device, seq) maps to the same payload shape (1-20 readings, as real devices
send), so a test that knows what it published can check exactly what was stored.
Publishing uses QoS 1 and waits for every PUBACK, so "sent" means "the broker has it".
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.config import Site
from hub.protocol import Kind, topic
from hub.services import Broker

GRID = {
    "code": "110105",
    "name": "区",
    "children": [{"code": "110105001", "name": "街道", "children": [
        {"code": "110105001002", "name": "社区", "children": [
            {"code": "11010500100201", "name": "网格"}]}]}],
}
METRICS = ("temp", "humidity", "heart_rate", "spo2", "body_temp", "flow_l", "smoke",
           "battery", "rssi", "pm25")


def make_site(site_id: str, n_devices: int, prefix: str = "dev") -> Site:
    """A minimal valid site with ``n_devices`` sensors."""
    return Site.model_validate({
        "site": {"id": site_id, "name": f"load {site_id}"},
        "grid": GRID,
        "devices": [
            {"id": f"{prefix}{i:04d}", "kind": "wearable", "grid": "11010500100201",
             "location": {"x": 0.5, "y": 0.5}, "heartbeat_s": 30}
            for i in range(n_devices)
        ],
    })


def n_readings(device: str, seq: int) -> int:
    return 1 + zlib.crc32(f"{device}/{seq}".encode()) % 20


def telemetry_payload(device: str, seq: int, ts: datetime | None = None) -> bytes:
    ts = ts or datetime.now(UTC)
    k = n_readings(device, seq)
    return json.dumps({
        "v": 1, "device": device, "seq": seq, "ts": ts.isoformat(),
        "readings": [
            {"metric": METRICS[i % len(METRICS)], "value": seq + i / 10, "unit": "u"}
            for i in range(k)
        ],
    }, separators=(",", ":")).encode()


def event_payload(device: str, seq: int, etype: str = "motion",
                  ts: datetime | None = None) -> bytes:
    ts = ts or datetime.now(UTC)
    return json.dumps({"v": 1, "device": device, "seq": seq, "ts": ts.isoformat(),
                       "type": etype, "data": {}}).encode()


def status_payload(device: str, seq: int, state: str, ts: datetime | None = None,
                   reason: str | None = None) -> bytes:
    ts = ts or datetime.now(UTC)
    d: dict[str, Any] = {"v": 1, "device": device, "seq": seq, "ts": ts.isoformat(),
                         "state": state}
    if reason:
        d["reason"] = reason
    return json.dumps(d).encode()


def expected_readings(devices: Iterable[str], seqs: Iterable[int]) -> int:
    s = list(seqs)
    return sum(n_readings(d, q) for d in devices for q in s)


def connect(broker: Broker, client_id: str = "", inflight: int = 1000) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=MQTTProtocolVersion.MQTTv5)
    if broker.username:
        c.username_pw_set(broker.username, broker.password)
    c.max_inflight_messages_set(inflight)
    ok = threading.Event()
    c.on_connect = lambda *_a: ok.set()
    c.connect(broker.host, broker.port, keepalive=30)
    c.loop_start()
    if not ok.wait(10):
        raise ConnectionError(f"cannot connect to the broker at {broker.host}:{broker.port}")
    return c


@dataclass
class PublishResult:
    sent: int
    seconds: float


class Publisher:
    """One paho client publishing QoS 1 and counting PUBACKs."""

    def __init__(self, broker: Broker, client_id: str = "", inflight: int = 1000) -> None:
        self._acked = 0
        self._cv = threading.Condition()
        self.client = connect(broker, client_id, inflight)
        self.client.on_publish = self._on_publish

    def _on_publish(self, *_a: Any) -> None:
        with self._cv:
            self._acked += 1
            self._cv.notify_all()

    def publish(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic_name, payload, qos=qos, retain=retain)

    def wait_acked(self, n: int, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        with self._cv:
            while self._acked < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_telemetry(
    broker: Broker,
    site_id: str,
    devices: Sequence[str],
    seqs: Sequence[int],
    *,
    rate: float | None = None,
    client_id: str = "",
) -> PublishResult:
    """Publish telemetry for every device and seq (seq-major order), at ``rate``
    messages per second (None: as fast as the broker takes them); returns once every
    message is acknowledged by the broker."""
    pub = Publisher(broker, client_id)
    topics = {d: topic(site_id, d, Kind.TELEMETRY) for d in devices}
    n = 0
    t0 = time.perf_counter()
    try:
        for q in seqs:
            for d in devices:
                pub.publish(topics[d], telemetry_payload(d, q))
                n += 1
                if rate:
                    ahead = n / rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        if not pub.wait_acked(n, timeout=120):
            raise TimeoutError(f"broker acknowledged fewer than {n} messages")
    finally:
        pub.close()
    return PublishResult(n, time.perf_counter() - t0)


def _worker(args: tuple[Broker, str, list[str], list[int], float | None]) -> tuple[int, float]:
    broker, site_id, devices, seqs, rate = args
    r = publish_telemetry(broker, site_id, devices, seqs, rate=rate)
    return r.sent, r.seconds


def publish_parallel(
    broker: Broker,
    site_id: str,
    devices: Sequence[str],
    seqs: Sequence[int],
    processes: int = 2,
    rate: float | None = None,
) -> PublishResult:
    """Like :func:`publish_telemetry` from several processes (devices split among
    them), so that one Python client is not the limit; ``rate`` is the total."""
    parts = [list(devices[i::processes]) for i in range(processes)]
    parts = [p for p in parts if p]
    per_rate = rate / len(parts) if rate else None
    # Only what a child process needs: a started broker's stop handle does not pickle.
    plain = Broker(broker.host, broker.port, broker.username, broker.password)
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(len(parts)) as pool:
        res = pool.map(_worker, [(plain, site_id, p, list(seqs), per_rate) for p in parts])
    return PublishResult(sum(r[0] for r in res), time.perf_counter() - t0)
