"""The family cascade's windows, to the second."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.family import cascade as fc

T0 = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
CONTACTS = [("李明", "13800000001", "儿子"), ("王芳", "13800000002", "女儿"),
            ("邻居", "13800000003", "")]


def s(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def test_no_answer_moves_on_at_the_window_s_end_and_exhausts() -> None:
    c, d = fc.start(CONTACTS, 300, T0)
    assert d == [fc.Notify(0)] and c.deadline == s(300)
    c, d = fc.tick(c, s(299))
    assert d == [] and c.current == 0
    c, d = fc.tick(c, s(300))
    assert d == [fc.TimedOut(0), fc.Notify(1)] and c.deadline == s(600)
    c, d = fc.tick(c, s(600))
    c, d = fc.tick(c, s(900))
    assert d == [fc.TimedOut(2), fc.Exhausted()] and c.outcome == "exhausted"
    assert c.deadline is None and fc.tick(c, s(5000)) == (c, [])


def test_second_contact_on_my_way_ends_it() -> None:
    c, _ = fc.start(CONTACTS, 300, T0)
    c, _ = fc.tick(c, s(300))
    c, d = fc.answer(c, 1, "on_my_way", s(420))
    assert d == [fc.Answered(1, "on_my_way", False)]
    assert c.outcome == "coming" and c.deadline is None
    assert c.steps[0].timed_out and c.steps[1].answered_at == s(420)


def test_cannot_go_moves_on_at_once_and_false_alarm_is_only_a_candidate() -> None:
    c, _ = fc.start(CONTACTS, 300, T0)
    c, d = fc.answer(c, 0, "cannot_go", s(10))
    assert d == [fc.Answered(0, "cannot_go", False), fc.Notify(1)]
    assert c.deadline == s(310)
    c, d = fc.answer(c, 1, "false_alarm", s(20))
    assert d == [fc.Answered(1, "false_alarm", True)] and c.outcome == "false_alarm"


def test_a_late_answer_after_the_end_is_recorded_only() -> None:
    c, _ = fc.start(CONTACTS[:1], 60, T0)
    c, _ = fc.tick(c, s(60))
    c, d = fc.answer(c, 0, "on_my_way", s(70))
    assert c.outcome == "exhausted" and c.steps[0].answer == "on_my_way"
    assert d == [fc.Answered(0, "on_my_way", False)]


def test_state_survives_json() -> None:
    c, _ = fc.start(CONTACTS, 300, T0)
    c, _ = fc.tick(c, s(300))
    assert fc.Cascade.from_json(c.to_json()) == c
