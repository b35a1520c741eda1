"""The store-and-forward spool: order, persistence, bounded size, seq numbers."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from edge.spool import Spool


def _counter(start: int = 1000):
    c = itertools.count(start)
    return lambda: next(c)


def _put(sp: Spool, device: str, kind: str, body: str) -> int:
    _, seq = sp.put(device, kind, f"sc/v1/s/{device}/{kind}",
                    lambda seq: f"{body}#{seq}".encode())
    return seq


def test_pending_is_per_device_in_spool_order_and_ack_removes(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", first_seq=lambda: 1)
    for i in range(5):
        _put(sp, "a", "event", f"a{i}")
        _put(sp, "b", "telemetry", f"b{i}")
    a = sp.pending("a")
    assert [r.payload for r in a] == [f"a{i}#{i + 1}".encode() for i in range(5)]
    assert [r.seq for r in a] == [1, 2, 3, 4, 5]
    assert [r.payload for r in sp.pending("a", after_id=a[1].id, limit=2)] == [b"a2#3", b"a3#4"]
    assert sp.ack([a[0].id, a[1].id]) == 2
    assert sp.ack([a[0].id]) == 0  # a second PUBACK for the same message changes nothing
    assert [r.payload for r in sp.pending("a")][0] == b"a2#3"
    assert len(sp) == 8 == sp.count()
    assert sp.count("b") == 5


def test_spool_and_seq_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sp = Spool(path, first_seq=lambda: 10)
    _put(sp, "d", "event", "x")
    _put(sp, "d", "event", "y")
    assert sp.next_seq("d") == 12  # a status message takes a seq too
    sp.ack([sp.pending("d")[0].id])
    sp.close()

    sp2 = Spool(path, first_seq=lambda: 10)
    assert len(sp2) == 1
    assert [r.payload for r in sp2.pending("d")] == [b"y#11"]
    assert _put(sp2, "d", "event", "z") == 13  # never reuses a seq
    assert _put(sp2, "e", "event", "z") == 10  # a new device starts at first_seq


def test_default_first_seq_counts_up_from_the_wall_clock(tmp_path: Path) -> None:
    """A device whose spool file was lost must not restart at a seq the hub already
    holds: a fresh spool starts from the clock, above any earlier one."""
    a = Spool(tmp_path / "a.sqlite")
    s1 = _put(a, "d", "event", "x")
    b = Spool(tmp_path / "b.sqlite")
    assert _put(b, "d", "event", "x") > s1


def test_bounded_drops_oldest_telemetry_never_events(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", max_messages=100, first_seq=lambda: 1)
    for i in range(60):
        _put(sp, "d", "telemetry", f"t{i}")
        _put(sp, "d", "event", f"e{i}")
    # 120 spooled into room for 100: the 20 oldest telemetry went, every event stayed.
    assert len(sp) == 100 == sp.count()
    assert sp.counter("dropped_telemetry") == 20
    kept = sp.pending("d", limit=1000)
    assert [r.payload.split(b"#")[0] for r in kept if r.kind == "event"] == \
        [f"e{i}".encode() for i in range(60)]
    tel = [r.payload.split(b"#")[0] for r in kept if r.kind == "telemetry"]
    assert tel == [f"t{i}".encode() for i in range(20, 60)]
    # Heartbeats go too; with only events left the bound is soft.
    for i in range(200):
        _put(sp, "d", "heartbeat", f"h{i}")
    for i in range(50):
        _put(sp, "d", "event", f"x{i}")
    kinds = [r.kind for r in sp.pending("d", limit=10_000)]
    assert kinds.count("event") == 110 and kinds.count("telemetry") == 0
    assert len(sp) == 110


def test_concurrent_writers_and_ackers_lose_nothing(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s.sqlite", first_seq=_counter())
    n = 300

    def writer(dev: str) -> None:
        for i in range(n):
            _put(sp, dev, "event", str(i))

    def acker(dev: str, got: list[int]) -> None:
        last = 0
        while len(got) < n:
            rows = sp.pending(dev, after_id=last, limit=50)
            if rows:
                got.extend(int(r.payload.split(b"#")[0]) for r in rows)
                last = rows[-1].id
                sp.ack(r.id for r in rows)

    got_a: list[int] = []
    got_b: list[int] = []
    ts = [threading.Thread(target=writer, args=(d,)) for d in "ab"]
    ts += [threading.Thread(target=acker, args=("a", got_a)),
           threading.Thread(target=acker, args=("b", got_b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert got_a == list(range(n)) and got_b == list(range(n))
    assert len(sp) == 0 == sp.count()
