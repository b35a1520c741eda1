"""Incident persistence against a real PostgreSQL: dedup, redelivery, concurrency,
optimistic transitions, the append-only audit, restart of escalation timers."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest

from hub.alerts.lifecycle import ConflictError, LifecycleError
from hub.alerts.model import Incident
from hub.clock import ManualClock
from hub.domain import IncidentState, Severity
from hub.store import incidents as store
from tests.integration.alerting import GRID1, T0, alarm, count, pool_for, service


def test_alarm_opens_one_incident_and_repeats_update_it(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool)
        [r] = svc.apply_now([alarm()])
        assert r.incident is not None and r.incident.id is not None
        assert r.incident.state is IncidentState.REPORTED
        assert r.incident.grid_code is not None and r.incident.grid_code.startswith(GRID1)
        # A repeat a minute later is the same incident, counted.
        [r2] = svc.apply_now([alarm(ts=T0 + timedelta(seconds=60))])
        assert r2.incident is not None and r2.incident.id == r.incident.id
        assert r2.incident.alarm_count == 2 and r2.incident.version == 2
        assert count(pool, "SELECT count(*) FROM incidents") == 1
        assert count(pool, "SELECT count(*) FROM audit WHERE action = 'report'") == 1
        # Notifications for the new incident wait in the outbox only if a channel exists.
        assert count(pool, "SELECT count(*) FROM incident_alarms") == 2


def test_redelivered_alarm_is_ignored(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool)
        a = alarm()
        svc.apply_now([a])
        again = svc.apply_now([a, a])
        assert all(r.duplicate for r in again)
        assert count(pool, "SELECT count(*) FROM incidents") == 1
        assert count(pool, "SELECT alarm_count FROM incidents") == 1
        assert count(pool, "SELECT count(*) FROM incident_alarms") == 1


def test_two_workers_racing_on_the_same_alarms_open_one_incident_each_key(db_url: str) -> None:
    keys = [f"sos:race{i}" for i in range(40)]
    with pool_for(db_url, size=8) as pool:
        a, b = service(pool), service(pool)
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def work(svc: object, rev: bool) -> None:
            try:
                barrier.wait()
                batch = [alarm(k) for k in (reversed(keys) if rev else keys)]
                for i in range(0, len(batch), 7):
                    svc.apply_now(batch[i:i + 7])  # type: ignore[attr-defined]
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=work, args=(s, rev))
              for s in (a, b) for rev in (False, True)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        assert count(pool, "SELECT count(*) FROM incidents") == len(keys)
        assert count(pool, "SELECT count(DISTINCT dedup_key) FROM incidents") == len(keys)
        assert count(pool, "SELECT count(*) FROM incident_alarms") == len(keys)
        assert count(pool, "SELECT max(alarm_count) FROM incidents") == 1


def test_database_refuses_a_second_open_incident_for_a_key(db_url: str) -> None:
    with pool_for(db_url) as pool:
        service(pool).apply_now([alarm("k")])
        with pool.connection() as c, pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(
                "INSERT INTO incidents (dedup_key, category, severity, state, title, opened_at,"
                " updated_at) SELECT dedup_key, category, severity, 'reported', title,"
                " opened_at, updated_at FROM incidents WHERE dedup_key = 'k'")


def test_concurrent_transitions_one_wins_the_other_conflicts(db_url: str) -> None:
    with pool_for(db_url, size=6) as pool:
        svc = service(pool)
        [r] = svc.apply_now([alarm()])
        assert r.incident is not None and r.incident.id is not None
        iid, v = r.incident.id, r.incident.version
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def act(action: str, reason: str | None) -> None:
            barrier.wait()
            try:
                svc.transition(iid, action, "op1", expected_version=v, reason=reason)
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

        ts = [threading.Thread(target=act, args=("register", None)),
              threading.Thread(target=act, args=("cancel", "test"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert sorted(outcomes) == ["conflict", "ok"]
        with pool.connection() as c:
            inc = store.get(c, iid)
        assert inc is not None and inc.version == v + 1
        assert count(pool, "SELECT count(*) FROM audit WHERE incident_id = %s", iid) == 2


def test_invalid_transition_is_refused_and_changes_nothing(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool)
        [r] = svc.apply_now([alarm()])
        assert r.incident is not None and r.incident.id is not None
        with pytest.raises(LifecycleError, match="cannot close"):
            svc.transition(r.incident.id, "close", "op1")
        with pool.connection() as c:
            assert store.get(c, r.incident.id).version == 1  # type: ignore[union-attr]


def test_audit_is_append_only(db_url: str) -> None:
    with pool_for(db_url) as pool:
        service(pool).apply_now([alarm()])
        with pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE audit SET actor = 'mallory'")
        with pool.connection() as c, pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM audit")


def test_escalation_resumes_after_restart_at_the_right_second(db_url: str) -> None:
    """SOS (accept_s=120 in the demo site): dispatched at T, the accept limit runs out
    at T+120. The first service dies at T+100; a new one on the same database, with a
    fresh clock, must fire at T+120, not earlier and not 120 s after its start."""
    with pool_for(db_url) as pool:
        clock = ManualClock(T0)
        svc = service(pool, clock)
        [r] = svc.apply_now([alarm()])
        assert r.incident is not None and r.incident.id is not None
        iid = r.incident.id
        svc.transition(iid, "register", "op1")
        svc.transition(iid, "dispatch", "op1", assignee="wang-wei")
        clock.advance(100)
        assert svc.tick() == []
        level_before = count(pool, "SELECT escalation_level FROM incidents WHERE id = %s", iid)
        del svc  # the process dies; nothing but the database survives

        clock2 = ManualClock(T0 + timedelta(seconds=100))
        svc2 = service(pool, clock2)
        clock2.advance(19)
        assert svc2.tick() == []
        clock2.advance(1)  # T+120
        [c] = svc2.tick()
        assert c.incident.id == iid
        assert c.incident.escalation_level == level_before + 1
        assert c.incident.escalations == 1
        assert count(pool, "SELECT count(*) FROM audit WHERE incident_id = %s"
                     " AND action = 'escalate'", iid) == 1
        # The next step counts from the missed deadline, not from the restart.
        clock2.advance(119)
        assert svc2.tick() == []
        clock2.advance(1)
        assert len(svc2.tick()) == 1


def test_list_filters_scope_and_keyset_paging(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool)
        batch = [alarm(f"k{i}", ts=T0 + timedelta(seconds=i),
                       grid_code="1101050010020103" if i % 2 else "1101050010020201")
                 for i in range(25)]
        svc.apply_now(batch)
        with pool.connection() as c:
            seen: list[int] = []
            cursor = None
            while True:
                items, cursor = store.list_incidents(c, store.Filters(scope=GRID1), 5, cursor)
                seen += [i.id for i in items]  # type: ignore[misc]
                assert all(i.grid_code.startswith(GRID1) for i in items)  # type: ignore[union-attr]
                if cursor is None:
                    break
            assert len(seen) == 12 and len(set(seen)) == 12
            opened = [store.get(c, i).opened_at for i in seen]  # type: ignore[union-attr]
            assert opened == sorted(opened, reverse=True)
            items, _ = store.list_incidents(c, store.Filters(state=("cancelled",)), 50)
            assert items == []
            with pytest.raises(ValueError):
                store.list_incidents(c, store.Filters(), 5, "not-a-cursor")


def test_list_by_severity_pages_most_severe_then_newest(db_url: str) -> None:
    sevs = (Severity.MINOR, Severity.CRITICAL, Severity.MAJOR)
    with pool_for(db_url) as pool:
        svc = service(pool)
        # Same times for some, so the id has to break ties across page boundaries.
        svc.apply_now([alarm(f"s{i}", ts=T0 + timedelta(seconds=i // 2),
                             severity=sevs[i % 3]) for i in range(17)])
        with pool.connection() as c:
            seen: list[Incident] = []
            cursor = None
            while True:
                items, cursor = store.list_incidents(c, store.Filters(), 4, cursor,
                                                     sort="severity")
                seen += items
                if cursor is None:
                    break
            assert len(seen) == 17 and len({i.id for i in seen}) == 17
            keys = [(int(i.severity), i.opened_at, i.id) for i in seen]
            assert keys == sorted(keys, reverse=True)
            assert len({k[0] for k in keys}) == 3
            # A cursor belongs to its sort.
            _, newest_cursor = store.list_incidents(c, store.Filters(), 4)
            assert newest_cursor is not None
            with pytest.raises(ValueError):
                store.list_incidents(c, store.Filters(), 4, newest_cursor, sort="severity")
            with pytest.raises(ValueError):
                store.list_incidents(c, store.Filters(), 4, sort="oldest")


def test_a_batch_updating_many_incidents_applies_in_one_go(db_url: str) -> None:
    with pool_for(db_url) as pool:
        svc = service(pool)
        svc.apply_now([alarm(f"k{i}") for i in range(30)])
        again = svc.apply_now([alarm(f"k{i}", ts=T0 + timedelta(seconds=5)) for i in range(30)])
        assert all(r.incident and r.incident.alarm_count == 2 for r in again)
        assert count(pool, "SELECT count(*) FROM incidents WHERE version = 2") == 30
        # A repeat and a new key in one batch, the same key twice in one batch.
        res = svc.apply_now([alarm("k0", ts=T0 + timedelta(seconds=9)), alarm("n1"),
                             alarm("n1", ts=T0 + timedelta(seconds=1))])
        assert res[1].incident and res[2].incident and res[1].incident.id == res[2].incident.id
        assert count(pool, "SELECT alarm_count FROM incidents WHERE dedup_key = 'n1'") == 2
        assert count(pool, "SELECT alarm_count FROM incidents WHERE dedup_key = 'k0'") == 3
