"""The live view's bookkeeping (hub/api/liveview.py) without a broker: who is
subscribed while watched, the boost's lease to the second on an injected clock, the
viewer limits, and what a viewer is sent (the newest frame, at most fps a second)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hub import protocol
from hub.api.liveview import LiveLimits, LiveRefused, LiveView, frames
from hub.clock import ManualClock
from hub.config import load_site
from hub.protocol import FrameMeta, Kind

REPO = Path(__file__).resolve().parents[2]
CAM = "cam-b3-lane"
T0 = datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)


@dataclass
class FakeConsumer:
    name: str
    subscriptions: list[tuple[str, int]]
    handler: Any


@dataclass
class FakeMqtt:
    consumers: dict[str, FakeConsumer] = field(default_factory=dict)
    published: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)

    def add_consumer(self, name: str, subs: Any, handler: Any) -> FakeConsumer:
        assert name not in self.consumers
        c = self.consumers[name] = FakeConsumer(name, list(subs), handler)
        return c

    def remove_consumer(self, c: FakeConsumer) -> None:
        del self.consumers[c.name]

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, by: str,
                retain: bool = False) -> None:
        self.published.append((topic, json.loads(payload), retain))

    def wait_connected(self, timeout: float) -> bool:
        return True


@dataclass
class Msg:
    topic: str
    payload: bytes


def _frame(seq: int) -> Msg:
    jpeg = cv2.imencode(".jpg", np.full((24, 32, 3), seq % 255, np.uint8))[1].tobytes()
    meta = FrameMeta(device=CAM, seq=seq, ts=T0 + timedelta(seconds=seq), width=32, height=24)
    return Msg(f"sc/v1/demo/{CAM}/frame", protocol.encode_frame(meta, jpeg))


@pytest.fixture
def live() -> tuple[LiveView, FakeMqtt, ManualClock]:
    mq, clock = FakeMqtt(), ManualClock(T0)
    lv = LiveView(load_site(REPO / "deploy/sites/demo.yaml"), mq,  # type: ignore[arg-type]
                  LiveLimits(per_camera=2, per_user=2, lease_s=30), clock=clock)
    return lv, mq, clock


def test_subscribed_and_boosted_only_while_watched(
        live: tuple[LiveView, FakeMqtt, ManualClock]) -> None:
    lv, mq, clock = live
    loop = asyncio.new_event_loop()
    a = lv.open(CAM, "op", loop)
    assert list(mq.consumers) == [f"live-{CAM}"]
    assert mq.consumers[f"live-{CAM}"].subscriptions == [(f"sc/v1/+/{CAM}/frame", 0)]
    topic, cfg, retained = mq.published[-1]
    assert topic == protocol.topic("demo", CAM, Kind.CONFIG) and retained
    assert cfg["live"] == {"fps": 5.0, "gate": False, "until": "2026-12-02T09:00:30Z"}
    b = lv.open(CAM, "admin", loop)
    assert len(mq.published) == 1  # a second viewer changes nothing
    lv.close(a)
    assert f"live-{CAM}" in mq.consumers
    clock.advance(7)
    lv.close(b)
    assert mq.consumers == {}
    assert "live" not in mq.published[-1][1] and mq.published[-1][1]["fps"] == 2.0
    loop.close()


def test_viewer_limits_per_camera_and_per_user(
        live: tuple[LiveView, FakeMqtt, ManualClock]) -> None:
    lv, _, _ = live
    loop = asyncio.new_event_loop()
    lv.open(CAM, "op", loop)
    lv.open(CAM, "op", loop)
    with pytest.raises(LiveRefused) as e:
        lv.open(CAM, "admin", loop)
    assert e.value.code == "camera_full"
    with pytest.raises(LiveRefused) as e:
        lv.open("cam-b3-stair2", "op", loop)
    assert e.value.code == "user_full"
    with pytest.raises(LiveRefused) as e:
        lv.open("nope", "admin", loop)
    assert e.value.code == "unknown_camera"
    loop.close()


def test_a_viewer_gets_the_newest_frame_at_most_fps_a_second_and_bad_ones_are_dropped(
        live: tuple[LiveView, FakeMqtt, ManualClock]) -> None:
    lv, mq, _ = live

    async def run() -> list[int]:
        v = lv.open(CAM, "op", asyncio.get_running_loop())
        handler = mq.consumers[f"live-{CAM}"].handler
        fake_now = [100.0]
        gen = frames(lv, v, "b", now=lambda: fake_now[0])
        got: list[int] = []

        async def read() -> None:
            async for part in gen:
                got.append(int(part.split(b"X-Frame-Seq: ")[1].split(b"\r\n")[0]))

        task = asyncio.create_task(read())
        handler(_frame(1))
        await asyncio.sleep(0.05)
        # Within the 0.2 s after a part: frames 2 and 3 arrive, only the newest goes.
        handler(_frame(2))
        handler(_frame(3))
        handler(Msg(f"sc/v1/demo/{CAM}/frame", b"SCF1broken"))  # refused, counted
        handler(Msg(f"sc/v1/other-site/{CAM}/frame", _frame(9).payload))  # not this site
        await asyncio.sleep(0.05)
        fake_now[0] += 0.2
        await asyncio.sleep(0.3)
        lv.close(v)
        task.cancel()
        return got

    assert asyncio.run(run()) == [1, 3]
    assert lv.latest(CAM) is None  # nobody watches: nothing kept
