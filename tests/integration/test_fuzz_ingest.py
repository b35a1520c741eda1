"""Fuzz: more than 10,000 malformed and random payloads through the real broker,
interleaved with valid messages. The consumer never stops, every bad message is
counted under a reason, and every valid one is stored.

Topics outside the ingest's subscriptions (another site, frame topics, deeper
levels) are filtered by the broker and never reach the ingest; the test sends a few
to show they change nothing, and counts as "bad sent" only what the broker delivers.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from hub.ingest.service import Ingest
from hub.protocol import MAX_JSON_BYTES, Kind, topic
from hub.services import Broker
from hub.store import readings as store
from hubtools import loadgen
from tests.integration.ingest_support import dedicated_broker, wait_for

pytestmark = pytest.mark.slow

N_BAD = 10_500


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with dedicated_broker(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


def _valid_tel(dev: str, seq: int) -> dict:
    return json.loads(loadgen.telemetry_payload(dev, seq))


def make_bad(rng: random.Random, site_id: str, devs: list[str]) -> tuple[str, bytes, str]:
    """One malformed message: (topic, payload, expected reason or '*' when a random
    payload may land on more than one reason)."""
    d = rng.choice(devs)
    t_tel = topic(site_id, d, Kind.TELEMETRY)
    now = datetime.now(UTC).isoformat()
    k = rng.randrange(16)
    if k == 0:  # random bytes
        return t_tel, rng.randbytes(rng.randrange(0, 300)), "*"
    if k == 1:  # truncated JSON
        p = loadgen.telemetry_payload(d, rng.randrange(10**6))
        return t_tel, p[: rng.randrange(0, len(p) - 1)], "bad_json"
    if k == 2:  # wrong types and broken fields
        m = _valid_tel(d, 1)
        field, value = rng.choice([
            ("seq", "x"), ("seq", -1), ("seq", 2**63), ("seq", 1.5),
            ("ts", "5 o clock"), ("ts", [5]),
            ("ts", "yesterday"), ("ts", "2026-11-22T10:00:00"),  # no zone
            ("readings", {}), ("readings", []), ("readings", [{"metric": "x"}] * 101),
            ("v", 2), ("device", None), ("extra", 1),
        ])
        m[field] = value
        return t_tel, json.dumps(m).encode(), "invalid"
    if k == 3:  # a bad reading
        m = _valid_tel(d, 1)
        m["readings"][0] = rng.choice([
            {"metric": "Temp", "value": 1}, {"metric": "t", "value": "hot"},
            {"metric": "t", "value": None}, {"metric": "t", "value": 1, "unit": "u" * 17},
            {"metric": "t", "value": 1, "unit": "a\x00b"}, {"metric": "t"},
            {"metric": "t", "value": 1e999},
        ])
        return t_tel, json.dumps(m).encode(), "invalid"
    if k == 4:  # huge
        return rng.choice([t_tel, topic(site_id, d, Kind.EVENT), topic(site_id, d, Kind.STATUS)]), \
            b'{"pad":"' + b"x" * (MAX_JSON_BYTES + rng.randrange(1, 5000)) + b'"}', "oversized"
    if k == 5:  # unknown device
        g = f"ghost{rng.randrange(1000)}"
        return topic(site_id, g, Kind.TELEMETRY), loadgen.telemetry_payload(g, 1), "unknown_device"
    if k == 6:  # payload of another device
        other = rng.choice([x for x in devs if x != d])
        return t_tel, loadgen.telemetry_payload(other, 1), "device_mismatch"
    if k == 7:  # topic levels the subscription matches but the scheme refuses
        bad_dev = rng.choice(["bad id!", "", "-lead", "x" * 65, "ü"])
        return f"sc/v1/{site_id}/{bad_dev}/telemetry", loadgen.telemetry_payload(d, 1), "bad_topic"
    if k == 8:  # not JSON objects
        return t_tel, rng.choice([b"[]", b"1", b'"s"', b"null", b"true"]), "invalid"
    if k == 9:  # not UTF-8, or broken escapes
        return t_tel, rng.choice([b'{"v":1,"device":"\xff\xfe"}', b'{"a":"\\ud800"}',
                                  b'{"a":"\\x"}']), "*"
    if k == 10:  # deep nesting
        n = rng.randrange(1000, 30_000)
        return t_tel, b"[" * n + b"]" * n, "*"
    if k == 11:  # an event that is not one
        return topic(site_id, d, Kind.EVENT), rng.choice([
            json.dumps({"v": 1, "device": d, "seq": 1, "ts": now, "type": "explode"}),
            json.dumps({"v": 1, "device": d, "seq": 1, "ts": now, "type": "sos", "data": []}),
            json.dumps({"v": 1, "device": d, "seq": 1, "ts": now, "type": "sos",
                        "data": {"k": "a\x00b"}}),
            loadgen.telemetry_payload(d, 1).decode(),
        ]).encode(), "invalid"
    if k == 12:  # a status that is not one
        return topic(site_id, d, Kind.STATUS), json.dumps(
            {"v": 1, "device": d, "seq": 1, "ts": now, "state": rng.choice(["up", 1, None])}
        ).encode(), "invalid"
    if k == 13:  # JSON with NaN / Infinity literals
        return t_tel, (b'{"v":1,"device":"%s","seq":1,"ts":"%s","readings":[{"metric":"t",'
                       b'"value":%s}]}' % (d.encode(), now.encode(),
                                          rng.choice([b"NaN", b"Infinity", b"-Infinity"]))), \
            "invalid"
    if k == 14:  # random printable junk
        return t_tel, "".join(rng.choice('{}[]":,0123456789abc\\ ') for _ in range(
            rng.randrange(1, 80))).encode(), "*"
    # a valid message with random bytes overwritten and one stray quote, which no
    # mutation can turn back into valid JSON
    p = bytearray(loadgen.telemetry_payload(d, 1))
    for _ in range(rng.randrange(0, 5)):
        p[rng.randrange(len(p))] = rng.randrange(256)
    p.insert(rng.randrange(len(p)), ord('"'))
    return t_tel, bytes(p), "*"


def test_fuzz_payloads_are_counted_and_never_stop_the_consumer(db_url, own_broker, site_id,
                                                              caplog):
    caplog.set_level(logging.WARNING, logger="hub.ingest.service")
    rng = random.Random(20261122)
    site = loadgen.make_site(site_id, 6)
    devs = [d.id for d in site.devices]
    ing = Ingest(db_url=db_url, broker=own_broker, site=site, client_id=f"ing-{site_id}",
                 shared_group=site_id, batch_wait_ms=20, session_expiry_s=600)
    ing.start()
    pub = loadgen.Publisher(own_broker, inflight=500)
    expected = Counter()
    valid_tel: set[tuple[str, int]] = set()
    valid_ev: set[tuple[str, int]] = set()
    seq = {d: 0 for d in devs}
    sent = 0
    try:
        assert ing.wait_connected(10)
        for i in range(N_BAD):
            t, p, reason = make_bad(rng, site_id, devs)
            pub.publish(t, p)
            expected[reason] += 1
            sent += 1
            if i % 10 == 0:  # a valid message between the bad ones
                d = rng.choice(devs)
                s = seq[d] = seq[d] + 1
                if i % 30 == 0:
                    pub.publish(topic(site_id, d, Kind.EVENT),
                                loadgen.event_payload(d, s, rng.choice(["motion", "door_open"])))
                    valid_ev.add((d, s))
                else:
                    pub.publish(topic(site_id, d, Kind.TELEMETRY), loadgen.telemetry_payload(d, s))
                    valid_tel.add((d, s))
                sent += 1
        # Outside the subscriptions: the broker never delivers these to the ingest.
        d0 = devs[0]
        for t in (f"sc/v1/other-{site_id}/{d0}/telemetry", f"sc/v1/{site_id}/{d0}/frame",
                  f"sc/v1/{site_id}/{d0}/telemetry/extra", f"sc/v2/{site_id}/{d0}/telemetry"):
            pub.publish(t, loadgen.telemetry_payload(devs[0], 999_999))
            sent += 1
        assert pub.wait_acked(sent, timeout=120)
        n_valid = len(valid_tel) + len(valid_ev)
        assert wait_for(lambda: ing.stats()["rejected_total"] >= N_BAD
                        and ing.stats().get("stored", 0) >= n_valid, 60), (
            dict(expected), ing.stats()["rejected"])
        st = ing.stats()
        rejected = Counter(st["rejected"])
        assert sum(rejected.values()) == N_BAD, (rejected, expected)
        for reason in ("oversized", "unknown_device", "device_mismatch", "bad_topic"):
            assert rejected[reason] == expected[reason], (reason, rejected, expected)
        assert set(rejected) <= {"oversized", "unknown_device", "device_mismatch", "bad_topic",
                                 "bad_json", "invalid"}
        # bad_json and invalid and the random ones ('*') share out the rest.
        assert rejected["bad_json"] >= expected["bad_json"]
        assert rejected["invalid"] >= expected["invalid"]
        assert rejected["bad_json"] + rejected["invalid"] == (
            expected["bad_json"] + expected["invalid"] + expected["*"])
        assert st["stored"] == n_valid and st.get("duplicates", 0) == 0
        with psycopg.connect(db_url) as c:
            keys = store.message_keys(c, devs)
            assert keys["telemetry"] == valid_tel
            assert keys["event"] == valid_ev
            assert store.count_readings(c, devs) == sum(
                loadgen.n_readings(d, s) for d, s in valid_tel)
        assert st["connected"]
        # Logged with topic and device, but a flood does not flood the log.
        logged = [r for r in caplog.records if r.getMessage() == "message rejected"]
        assert 0 < len(logged) <= 5 * len(rejected)
        assert all(hasattr(r, "topic") and hasattr(r, "device") for r in logged)
    finally:
        pub.close()
        ing.stop()
