"""An edge agent that runs detection itself sends its alarms through the durable
inlet with its device's credentials, on the production broker config and ACL
(deploy/mosquitto, hub-edge credentials): its own alarm becomes an incident; it cannot
write another device's alarm topic (0x87 Not authorized); an alarm on its own topic
that names a subject outside the device's scope is refused by the alert worker."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.agent import EdgeAgent
from edge.config import DeviceSpec, EdgeConfig, Household
from hub.alarmwire import encode_alarm
from hub.config import load_site
from hub.domain import Alarm, AlarmState, Severity
from tests.integration.alerting import pool_for
from tests.integration.secure_broker import REPO, mosquitto_exe, start_secure_broker
from tests.integration.test_alarm_inlet import AlertWorker, wait_for

pytestmark = pytest.mark.skipif(mosquitto_exe() is None, reason="mosquitto not installed")

BAND = "wearable-3-2-501"  # subject s01, grid 1101050010020103


def band_fall(i: int) -> Alarm:
    return Alarm(rule="wearable_fall", category="fall", severity=Severity.CRITICAL,
                 state=AlarmState.FIRING, dedup_key=f"fall:{BAND}:{i}",
                 ts=datetime.now(UTC).replace(microsecond=0), title="3-2-501 手环 跌倒",
                 device_id=BAND, subject_id="s01", evidence={"impact_g": 3.1})


def test_an_edge_device_sends_its_own_alarm_and_only_its_own(
        db_url: str, tmp_path: Path) -> None:
    site = load_site(REPO / "deploy" / "sites" / "demo.yaml")
    sb = start_secure_broker(tmp_path / "broker", site)
    pw = sb.passwords
    try:
        with pool_for(db_url) as pool:
            worker = AlertWorker(pool, site, sb.hub, "hub-alerts-edge-test", "hub").start()
            cfg = EdgeConfig(
                broker=f"mqtt://{sb.devices.host}:{sb.devices.port}", site="demo",
                spool=tmp_path / "spool.sqlite",
                households=[Household(id="s01", address="3-2-501")],
                devices=[DeviceSpec(id=BAND, kind="wearable", subject="s01", username=BAND,
                                    password=pw[BAND])])
            agent = EdgeAgent(cfg, simulate=False).start()
            try:
                assert agent.wait_connected(10)
                agent.raise_alarm(band_fall(1))
                assert agent.wait_drained(10)
                assert wait_for(lambda: worker.inlet.stats().get("acked") == 1, 10)
                with psycopg.connect(db_url) as c:
                    rows = c.execute("SELECT category, device_id, subject_id, grid_code"
                                     " FROM incidents").fetchall()
                assert rows == [("fall", BAND, "s01", "1101050010020103")]
                with pytest.raises(ValueError, match="does not host"):
                    agent.raise_alarm(replace(band_fall(2), device_id="sos-3-2-501"))
            finally:
                agent.stop()

            # The same device's credentials on a raw client.
            acks: dict[int, Any] = {}
            done = threading.Event()
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv5)
            c.username_pw_set(BAND, pw[BAND])

            def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
                acks[mid] = rc
                if len(acks) == 2:
                    done.set()

            c.on_publish = on_publish
            c.connect(sb.devices.host, sb.devices.port)
            c.loop_start()
            try:
                other = replace(band_fall(3), device_id="wearable-2-1-302",
                                dedup_key="fall:wearable-2-1-302:3", subject_id="s02")
                forged = c.publish("sc/v1/demo/wearable-2-1-302/alarm", encode_alarm(other),
                                   qos=1).mid
                stray = c.publish(f"sc/v1/demo/{BAND}/alarm",
                                  encode_alarm(replace(band_fall(4), subject_id="s02")),
                                  qos=1).mid
                assert done.wait(10)
                assert acks[forged].value == 0x87  # Not authorized
                assert not acks[stray].is_failure
                assert wait_for(
                    lambda: worker.inlet.stats().get("rejected_out_of_scope") == 1, 10)
            finally:
                c.loop_stop()
                c.disconnect()
            time.sleep(0.3)
            assert worker.inlet.stats().get("received") == 2  # the forged one never came
            worker.stop()
    finally:
        sb.stop()
