"""Issue 11's whole list against a live hub: ``bench/probe.py``'s classes, each a test.

The hub is the one the probe starts (``hub run`` with every role, in a process of its
own, default settings, Mosquitto from ``deploy/mosquitto/mosquitto.conf`` with the
files ``hub-edge credentials`` writes, users of every role made through the API) on
the test session's PostgreSQL server. Each class replays its hostile requests and
MQTT messages, several vectors each, and a failure lists the vectors that broke and
what the hub did instead. The classes run in the issue's order on one hub; each
leaves it usable for the next (the rate-limit class clears the lock-out it causes).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import probe
from hub import services

pytestmark = pytest.mark.skipif(probe.mosquitto_exe() is None,
                                reason="mosquitto not installed")


@pytest.fixture(scope="module")
def target(pg_server: services.Postgres) -> Iterator[probe.Target]:
    # The probe makes its own work directory: as root, Mosquitto runs as its own user
    # and must reach it, which pytest's private base directory does not allow.
    with probe.started_target(database_url=pg_server.url) as t:
        yield t


@pytest.mark.parametrize("key", [k for k, _, _ in probe.CLASSES])
def test_security_probe(target: probe.Target, key: str) -> None:
    attempts = probe.run_class(target, key)
    broken = [f"{a.vector}: {a.what}" for a in attempts if not a.held]
    assert attempts, f"class {key} tried nothing"
    assert not broken, f"class {key}: {len(broken)} of {len(attempts)} vectors broke:\n" + \
        "\n".join(broken)
