"""The durable alarm inlet on the real broker and PostgreSQL: a detector's process
publishes alarms (``hub.alarmbus``), alert workers apply them (``hub.alerts.inlet``)
and acknowledge after the commit.

* in one process, over two connections: a repeated alarm opens one incident with one
  timeline entry; a refused alarm is counted and acknowledged (it never comes back);
  an alarm published while no alert worker holds the inlet stays with the publisher
  until one does;
* an alerts-only ``hub run --roles alerts`` process SIGKILLed between receiving an
  alarm and committing it: the alarm comes again when it restarts, and is applied
  once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from hub.alarmbus import AlarmPublisher
from hub.alarmwire import encode_alarm
from hub.alerts.inlet import AlarmInlet
from hub.clock import SystemClock
from hub.config import Site
from hub.domain import Alarm, AlarmState, Severity
from hub.mqtt import MqttConnection
from hub.protocol import Kind, topic
from hub.services import Broker, free_port
from tests.integration.alerting import pool_for, service, wait_for

REPO = Path(__file__).resolve().parents[2]
CAM = "cam-b3-lane"
# The alerts process runs the sensing rules too: count only the alarms sent here.
FALLS = "SELECT count(*) FROM incidents WHERE category = 'fall'"
GRID = "1101050010020103"


def site_raw(site_id: str) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "deploy/sites/demo.yaml").read_text(encoding="utf-8"))
    raw["site"]["id"] = site_id
    return raw


def fall(i: int = 0, ts: datetime | None = None) -> Alarm:
    return Alarm(rule="fall", category="fall", severity=Severity.CRITICAL,
                 state=AlarmState.FIRING, dedup_key=f"fall:{CAM}:{i}",
                 ts=ts or datetime.now(UTC).replace(microsecond=0), title="3号楼 跌倒",
                 grid_code=GRID, device_id=CAM, evidence={"lying_s": 2.0})


def count(db_url: str, sql: str, *args: Any) -> int:
    with psycopg.connect(db_url) as c:
        row = c.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


class AlertWorker:
    """An alert service and its inlet on a connection of their own (persistent
    session under ``client_id``), as an alerts process has."""

    def __init__(self, pool: Any, site: Site, broker: Broker, client_id: str,
                 group: str) -> None:
        self.svc = service(pool, clock=SystemClock(), site=site)  # type: ignore[arg-type]
        self.conn = MqttConnection(broker, client_id, persistent_session=True,
                                   receive_maximum=100)
        self.inlet = AlarmInlet(self.conn, site, SystemClock(), self.svc.apply_now,
                                shared_group=group, categories=lambda: site.registry)

    def start(self) -> AlertWorker:
        self.inlet.start()
        self.conn.start()
        assert self.inlet.wait_ready(10)
        return self

    def stop(self) -> None:
        self.inlet.stop()
        self.conn.stop()
        self.svc.stop()


@pytest.fixture
def site(site_id: str) -> Site:
    return Site.model_validate(site_raw(site_id))


@pytest.fixture
def detector(broker: Broker, site_id: str) -> Iterator[tuple[MqttConnection, AlarmPublisher]]:
    conn = MqttConnection(broker, f"hub-test-vision-{site_id}").start()
    assert conn.wait_connected(10)
    pub = AlarmPublisher(conn, site_id, retry_max_s=0.2).start()
    yield conn, pub
    pub.stop(2)
    conn.stop()


def test_a_repeated_alarm_is_one_incident_and_one_timeline_entry(
        db_url: str, broker: Broker, site: Site, site_id: str,
        detector: tuple[MqttConnection, AlarmPublisher]) -> None:
    conn, pub = detector
    with pool_for(db_url) as pool:
        worker = AlertWorker(pool, site, broker, f"hub-test-alerts-{site_id}",
                             f"g{site_id}").start()
        try:
            a = fall()
            assert pub.publish(a)
            assert wait_for(lambda: worker.inlet.stats().get("acked") == 1, 10), \
                worker.inlet.stats()
            timeline = count(db_url, "SELECT count(*) FROM audit")
            assert count(db_url, "SELECT count(*) FROM incidents") == 1
            assert timeline >= 1
            assert pub.publish(a)  # the same alarm again, as a redelivery would be
            assert wait_for(lambda: worker.inlet.stats().get("acked") == 2, 10)
            assert count(db_url, "SELECT count(*) FROM incidents") == 1
            assert count(db_url, "SELECT count(*) FROM audit") == timeline
            assert count(db_url, "SELECT count(*) FROM incident_alarms") == 1
            row = count(db_url, "SELECT count(*) FROM incidents WHERE device_id = %s"
                        " AND grid_code = %s AND category = 'fall'", CAM, GRID)
            assert row == 1

            # Out of the camera's scope: refused, counted and acknowledged.
            bad = replace(fall(1), grid_code="1101050010020203")
            [err] = conn.publish_many([(topic(site_id, CAM, Kind.ALARM), encode_alarm(bad))],
                                      by="test")
            assert err is None
            assert wait_for(lambda: worker.inlet.stats().get("rejected_out_of_scope") == 1, 10)
            assert pub.stats()["dropped"] == {}
        finally:
            worker.stop()
        # A new connection of the same session: the refused alarm does not come back.
        again = AlertWorker(pool, site, broker, f"hub-test-alerts-{site_id}",
                            f"g{site_id}").start()
        try:
            time.sleep(1.0)
            assert again.inlet.stats().get("received", 0) == 0
        finally:
            again.stop()
    assert count(db_url, "SELECT count(*) FROM incidents") == 1


def test_an_alarm_waits_with_its_publisher_until_an_alert_worker_holds_the_inlet(
        db_url: str, broker: Broker, site: Site, site_id: str,
        detector: tuple[MqttConnection, AlarmPublisher]) -> None:
    _, pub = detector
    assert pub.publish(fall(7))
    time.sleep(1.0)  # the broker said nobody subscribes: the publisher keeps it
    assert pub.queued == 1 and pub.published == 0
    with pool_for(db_url) as pool:
        worker = AlertWorker(pool, site, broker, f"hub-test-alerts-{site_id}",
                             f"g{site_id}").start()
        try:
            assert wait_for(lambda: count(db_url, "SELECT count(*) FROM incidents") == 1, 15)
            assert pub.flush(5) and pub.published == 1
        finally:
            worker.stop()


def _alerts_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "run", "--roles", "alerts"],
                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


@pytest.mark.slow
def test_an_alert_worker_killed_before_its_commit_gets_the_alarm_again(
        db_url: str, broker: Broker, site_id: str, tmp_path: Path,
        detector: tuple[MqttConnection, AlarmPublisher]) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site_raw(site_id), allow_unicode=True),
                         encoding="utf-8")
    env = {**os.environ, "HUB_DATABASE_URL": db_url, "HUB_MQTT_URL": broker.url,
           "HUB_SITE_FILE": str(site_file), "HUB_DATA_DIR": str(tmp_path / "data"),
           "HUB_MQTT_CLIENT_ID": f"hub-t-{site_id}", "HUB_SHARED_GROUP": f"g{site_id}",
           "HUB_HTTP_PORT": str(free_port()), "HUB_LOG_JSON": "true"}
    log = tmp_path / "alerts.log"
    proc = _alerts_process(env, log)
    _, pub = detector
    try:
        assert wait_for(lambda: _logged(log, "hub started"), 60), log.read_text()[-2000:]
        # The inlet's session exists once its subscription is acknowledged: an alarm
        # published before that would have waited with the publisher (test above).
        probe = fall(0)
        assert pub.publish(probe) and pub.flush(20)
        assert wait_for(lambda: count(db_url, FALLS) == 1, 20)

        # Hold the commit: the worker receives the alarm and blocks on the lock.
        blocker = psycopg.connect(db_url)
        blocker.execute("LOCK TABLE incident_alarms IN ACCESS EXCLUSIVE MODE")
        a = fall(1)
        assert pub.publish(a) and pub.flush(10)

        def waiting() -> bool:
            return count(db_url, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                         " current_database() AND wait_event_type = 'Lock'") >= 1
        assert wait_for(waiting, 20)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        blocker.rollback()
        blocker.close()
        assert count(db_url, "SELECT count(*) FROM incident_alarms") == 1  # not committed

        proc = _alerts_process(env, log)
        assert wait_for(lambda: count(db_url, FALLS) == 2, 60), \
            log.read_text()[-3000:]
        # Sent once more (a repeat from the detector): still one incident for it.
        assert pub.publish(a) and pub.flush(10)
        time.sleep(1.0)
        assert count(db_url, "SELECT count(*) FROM incidents WHERE dedup_key = %s",
                     a.dedup_key) == 1
        assert count(db_url, "SELECT count(*) FROM incident_alarms WHERE dedup_key = %s",
                     a.dedup_key) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert not [x for x in lines if x.get("message") == "alarm rejected"]
