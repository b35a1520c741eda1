"""The lease round's decision (hub.leases.plan), to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.leases import Lease, fair_share, plan

T0 = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
KEYS = [f"{i:02d}" for i in range(8)]


def rows(owners: dict[str, tuple[str, datetime]]) -> list[Lease]:
    return [Lease(k, *owners.get(k, (None, None))) for k in KEYS]  # type: ignore[arg-type]


def test_fair_share() -> None:
    assert fair_share(16, 1) == 16
    assert fair_share(16, 3) == 6
    assert fair_share(0, 2) == 0
    with pytest.raises(ValueError):
        fair_share(4, 0)


def test_a_lone_worker_takes_every_free_row() -> None:
    p = plan(rows({}), "a", [], T0)
    assert p.take == tuple(KEYS) and p.renew == () and p.release == ()


def test_held_rows_are_renewed_not_taken() -> None:
    until = T0 + timedelta(seconds=6)
    p = plan(rows({k: ("a", until) for k in KEYS}), "a", ["a"], T0)
    assert p.renew == tuple(KEYS) and p.take == () and p.release == ()


def test_a_lease_expires_to_the_second() -> None:
    """Held until expires_at, free from that instant on."""
    until = T0 + timedelta(seconds=6)
    held = rows({k: ("a", until) for k in KEYS})
    assert plan(held, "b", ["a", "b"], until - timedelta(seconds=1)).take == ()
    assert plan(held, "b", ["a", "b"], until).take == tuple(KEYS[:4])
    # ... and once "a" has left the members, "b"'s share is every row.
    assert plan(held, "b", ["b"], until).take == tuple(KEYS)


def test_an_over_quota_worker_releases_for_a_new_one() -> None:
    until = T0 + timedelta(seconds=6)
    held = rows({k: ("a", until) for k in KEYS})
    p = plan(held, "a", ["a", "b"], T0)
    assert p.renew == tuple(KEYS[:4]) and p.release == tuple(KEYS[4:]) and p.take == ()
    # The newcomer takes nothing held: only what "a" released is free to it.
    assert plan(held, "b", ["a", "b"], T0).take == ()
    after = rows({k: ("a", until) for k in KEYS[:4]})
    assert plan(after, "b", ["a", "b"], T0).take == tuple(KEYS[4:])


def test_shares_cover_every_row_with_three_workers() -> None:
    until = T0 + timedelta(seconds=6)
    members = ["a", "b", "c"]
    owners: dict[str, tuple[str, datetime]] = {}
    for me in members:  # one round each, in turn
        p = plan(rows(owners), me, members, T0)
        owners.update({k: (me, until) for k in (*p.renew, *p.take)})
    assert sorted(owners) == KEYS
    counts = {m: sum(1 for o, _ in owners.values() if o == m) for m in members}
    assert counts == {"a": 3, "b": 3, "c": 2}


def test_an_expired_own_lease_is_taken_again_not_renewed() -> None:
    held = rows({"00": ("a", T0)})
    p = plan(held, "a", ["a"], T0)
    assert "00" in p.take and "00" not in p.renew
