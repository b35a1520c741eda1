"""Web Push rows and messages (pure) and the VAPID key's source."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from hub.alerts.model import Notification
from hub.alerts.notifiers.webpush import Renotify, WebPushPlan, load_keys, message
from hub.domain import IncidentState, Severity
from hub.grid.tree import Recipient

T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)


def _note(sev: Severity, category: str = "sos", reason: str = "new") -> Notification:
    people = (Recipient("wang-wei", "王伟", "grid_worker", "11010500100201", None),
              Recipient("zhao-min", "赵敏", "grid_leader", "11010500100201", None),
              Recipient("wang-wei", "王伟", "grid_worker", "1101050010020103", None))
    return Notification(incident_id=7, grid_code="1101050010020103", level=0,
                        recipients=people, reason=reason, severity=sev, title="SOS 3-2-501",  # type: ignore[arg-type]
                        category=category, state=IncidentState.REPORTED, at=T0)


def test_one_row_per_person_and_renotify_only_for_critical_life_safety() -> None:
    plan = WebPushPlan(lambda c: c == "sos", Renotify(every_s=120, times=3))
    rows = plan.rows(_note(Severity.CRITICAL))
    assert [r.recipient for r in rows] == ["wang-wei", "zhao-min"]
    assert rows[0].channel == "webpush" and rows[0].incident_id == 7
    assert rows[0].payload["renotify"] == {"every_s": 120, "left": 3, "state": "reported", "n": 0}
    assert rows[0].payload["urgent"] is True
    assert "renotify" not in plan.rows(_note(Severity.MAJOR))[0].payload
    assert "renotify" not in plan.rows(_note(Severity.CRITICAL, "fire_lane"))[0].payload
    assert "renotify" not in plan.rows(_note(Severity.CRITICAL, reason="cleared"))[0].payload
    assert "renotify" not in WebPushPlan(lambda c: True, Renotify(times=0)).rows(
        _note(Severity.CRITICAL))[0].payload


def test_message_opens_the_incident_and_a_reminder_says_so() -> None:
    rows = WebPushPlan(lambda c: True).rows(_note(Severity.CRITICAL))
    m = message(rows[0].payload["note"])
    assert m["url"] == "/m?incident=7" and m["tag"] == "incident-7"
    assert m["title"].startswith("【紧急】#7") and m["requireInteraction"] is True
    assert m["again"] == 0 and m["vibrate"][0] == 400
    again = message(rows[0].payload["note"], again=2)
    assert again["again"] == 2 and "第 2 次提醒" in again["body"] and again["renotify"]
    minor = message({**rows[0].payload["note"], "severity": "minor"})
    assert minor["requireInteraction"] is False and minor["renotify"] is False
    summary = message(rows[0].payload["note"], others=[{"incident_id": 8, "title": "x"}])
    assert summary["title"].startswith("2 条告警") and "#8 x" in summary["body"]


def test_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    a = load_keys(tmp_path)
    f = tmp_path / "vapid" / "private.pem"
    assert f.exists() and stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert load_keys(tmp_path).public_key == a.public_key
    assert len(a.public_key) == 87  # 65 bytes, base64url without padding
    other = load_keys(tmp_path / "x")
    pem = (tmp_path / "x" / "vapid" / "private.pem").read_text()
    assert load_keys(tmp_path, pem).public_key == other.public_key != a.public_key
