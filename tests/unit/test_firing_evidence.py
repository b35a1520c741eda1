"""The numbers that fired an incident stay with it: a clear updates the latest
evidence but never the firing evidence; a refire starts a new firing run."""

from __future__ import annotations

from datetime import timedelta

from hub.alerts.engine import IncidentEngine
from hub.clock import ManualClock
from hub.domain import AlarmState, Category, Severity
from tests.unit.test_engine import SITE, T0, TREE, Store, alarm

VITALS = dict(cat=Category.VITALS, key="vitals:s01:heart_rate", severity=Severity.MAJOR,
              device_id="wearable-3-2-501")


def test_clear_keeps_the_firing_numbers_and_refire_replaces_them() -> None:
    store = Store(IncidentEngine(SITE, TREE, ManualClock(T0)))
    fired = {"metric": "heart_rate", "readings": [154.9, 152.5, 152.2], "low": 40, "high": 130}
    store.feed(alarm(**VITALS, evidence=fired))
    store.feed(alarm(**VITALS, ts=T0 + timedelta(seconds=90), state=AlarmState.CLEARED,
                     evidence={"metric": "heart_rate", "value": 69.6, "low": 40, "high": 130}))
    inc = store.incidents[1]
    assert not inc.firing
    assert inc.firing_evidence == fired
    assert inc.evidence["value"] == 69.6  # the latest values, shown apart
    # A repeat while firing adds to the run; a refire after a clear starts a new one.
    refired = {"metric": "heart_rate", "readings": [141.0, 139.5, 138.0], "low": 40, "high": 130}
    store.feed(alarm(**VITALS, ts=T0 + timedelta(seconds=200), evidence=refired))
    assert store.incidents[1].firing_evidence == refired
    store.feed(alarm(**VITALS, ts=T0 + timedelta(seconds=210), evidence={"peak": 160.0}))
    assert store.incidents[1].firing_evidence == {**refired, "peak": 160.0}

