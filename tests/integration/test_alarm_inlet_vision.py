"""A vision worker with no alert service beside it: frames of a real picture with four
people -> MQTT -> the vision worker (real pose model, the camera's crowding rule) ->
its alarms published on the durable inlet through its own MQTT connection -> an alert
worker on another connection -> one crowding incident, opened and cleared."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import psycopg

from hub import protocol
from hub.alarmbus import AlarmPublisher
from hub.mqtt import MqttConnection
from hub.protocol import Kind
from hub.services import Broker
from hub.vision.worker import VisionWorker
from tests.integration.alerting import pool_for
from tests.integration.test_alarm_inlet import AlertWorker
from tests.integration.test_crowding_worker import FEET, pose, publisher  # noqa: F401
from tests.integration.test_frames_worker import frame_payload, make_site, wait_for


def incidents(db_url: str) -> list[tuple[str, bool, str]]:
    with psycopg.connect(db_url) as c:
        return c.execute("SELECT category, firing, device_id FROM incidents").fetchall()


def test_a_vision_only_worker_raises_an_incident_through_the_inlet(
        db_url: str, broker: Broker, site_id: str, tmp_path: Path, pose: Any,  # noqa: F811
        publisher: mqtt.Client) -> None:  # noqa: F811
    bus = cv2.imread(str(resources.files("ultralytics") / "assets" / "bus.jpg"))
    crowd = cv2.resize(bus, (bus.shape[1] // 2, bus.shape[0] // 2))
    empty = np.full_like(crowd, 110)
    site = make_site(site_id, {"cam-square": {
        "source": "unused", "fps": 5, "max_width": 640,
        "zones": [{"name": "square", "kind": "watch", "polygon": FEET}],
        "rules": {"crowding": {"zones": [
            {"zone": "square", "max_people": 2, "dwell_s": 2, "clear_s": 1}]}},
    }})
    vision_conn = MqttConnection(broker, f"hub-test-vision-{site_id}")
    alarms = AlarmPublisher(vision_conn, site_id).start()
    worker = VisionWorker(site, broker, tmp_path / "data", alarms.publish,
                          pose_factory=lambda: pose, analysis_threads=1,
                          mqtt_connection=vision_conn)
    with pool_for(db_url) as pool:
        alerts = AlertWorker(pool, site, broker, f"hub-test-alerts-{site_id}",
                             f"g{site_id}").start()
        vision_conn.start()  # as hub.node does: the connection, then the worker
        worker.start()
        topic = protocol.topic(site_id, "cam-square", Kind.FRAME)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        try:
            assert vision_conn.wait_connected(10)
            time.sleep(0.5)
            for k, img in enumerate([crowd] * 9 + [empty] * 7):
                publisher.publish(topic, frame_payload("cam-square", k,
                                                       t0 + timedelta(seconds=k / 2), img))
                time.sleep(0.3)
                if k == 8:  # as the crowding test: the crowd's alarm before it leaves
                    assert wait_for(lambda: alarms.published >= 1, 30), worker.health()
            assert wait_for(lambda: incidents(db_url) == [("crowding", False, "cam-square")],
                            30), (incidents(db_url), alerts.inlet.stats(), alarms.stats(),
                                  vision_conn.stats(), str(worker.health()))
            assert alarms.flush(5)
            stats = alerts.inlet.stats()
            assert stats.get("rejected", 0) == 0 and stats["acked"] == alarms.published >= 2
        finally:
            worker.stop()
            alarms.stop()
            vision_conn.stop()
            alerts.stop()


def test_hub_nodes_vision_only_and_alerts_only(
        db_url: str, broker: Broker, site_id: str, tmp_path: Path,
        publisher: mqtt.Client) -> None:  # noqa: F811
    """The roles as a district runs them: ``HubNode(roles={"vision"})`` (its cameras by
    lease, its alarms to the inlet) and ``HubNode(roles={"alerts"})``, no alert
    service in the vision node."""
    from hub.config import Settings
    from hub.node import HubNode
    from hub.services import free_port

    bus = cv2.imread(str(resources.files("ultralytics") / "assets" / "bus.jpg"))
    crowd = cv2.resize(bus, (bus.shape[1] // 2, bus.shape[0] // 2))
    site = make_site(site_id, {"cam-square": {
        "source": "unused", "fps": 5, "max_width": 640,
        "zones": [{"name": "square", "kind": "watch", "polygon": FEET}],
        "rules": {"crowding": {"zones": [
            {"zone": "square", "max_people": 2, "dwell_s": 2, "clear_s": 1}]}},
    }})

    def node(roles: set[str], name: str) -> HubNode:
        s = Settings(data_dir=tmp_path / name, mqtt_client_id=f"hub-{site_id}-{name}",
                     shared_group=f"g{site_id}", http_port=free_port(), db_pool_max=4)
        return HubNode(settings=s, site=site, broker=broker, database_url=db_url,
                       roles=frozenset(roles), vision_backend="torch")

    alerts = node({"alerts"}, "a").start()
    vision = node({"vision"}, "v")
    try:
        vision.start()
        assert vision.alerts is None and alerts.vision is None
        assert wait_for(lambda: vision.vision.owned_cameras == ["cam-square"], 30)
        assert wait_for(lambda: alerts.inlet.ready, 10)
        topic = protocol.topic(site_id, "cam-square", Kind.FRAME)
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        for k in range(9):
            publisher.publish(topic, frame_payload("cam-square", k,
                                                   t0 + timedelta(seconds=k / 2), crowd))
            time.sleep(0.3)
        assert wait_for(lambda: ("crowding", True, "cam-square") in incidents(db_url), 40), (
            vision.health(), alerts.health())
        assert vision.health()["alarm_publisher"]["dropped"] == {}
    finally:
        vision.stop()
        alerts.stop()
