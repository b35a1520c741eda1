"""The family cascade as a pure state machine: the contacts in their order, the one
being waited on and the end of its window. Inputs (contacts, answers) and the time
in; the new state and what to do (``Notify``, ``TimedOut``, ``Answered``,
``Exhausted``) out. No clock, no I/O.

* ``on_my_way`` ends the cascade: somebody is going.
* ``false_alarm`` ends it too and makes the incident a *candidate* for cancel with
  the contact's reason; it never closes the incident by itself.
* ``cannot_go`` moves on to the next contact at once.
* No answer by the window's end moves on; after the last one the cascade is
  ``exhausted`` and the incident goes on up the grid as its time limits say (the
  grid was told from the start: a life is at stake, so the family does not hold it
  back)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

Answer = Literal["on_my_way", "false_alarm", "cannot_go"]
ANSWERS: tuple[Answer, ...] = ("on_my_way", "false_alarm", "cannot_go")
LABELS: dict[str, tuple[str, str]] = {
    "on_my_way": ("我在路上", "I am on my way"),
    "false_alarm": ("她没事，误报", "She is fine, false alarm"),
    "cannot_go": ("我去不了", "I cannot go"),
}
Outcome = Literal["coming", "false_alarm", "exhausted"]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    phone: str
    relation: str = ""
    notified_at: datetime | None = None
    deadline: datetime | None = None
    answer: Answer | None = None
    answered_at: datetime | None = None
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Cascade:
    steps: tuple[Step, ...]
    window_s: float
    current: int | None = None  # the contact being waited on
    outcome: Outcome | None = None

    @property
    def deadline(self) -> datetime | None:
        if self.current is None or self.outcome is not None:
            return None
        return self.steps[self.current].deadline

    def to_json(self) -> dict[str, Any]:
        def enc(s: Step) -> dict[str, Any]:
            d = asdict(s)
            for k in ("notified_at", "deadline", "answered_at"):
                d[k] = d[k].isoformat() if d[k] else None
            return d
        return {"steps": [enc(s) for s in self.steps], "window_s": self.window_s,
                "current": self.current, "outcome": self.outcome}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cascade:
        def dec(x: dict[str, Any]) -> Step:
            return Step(**{k: (datetime.fromisoformat(v) if k in (
                "notified_at", "deadline", "answered_at") and v else v) for k, v in x.items()})
        return cls(steps=tuple(dec(s) for s in d["steps"]), window_s=float(d["window_s"]),
                   current=d.get("current"), outcome=d.get("outcome"))


@dataclass(frozen=True, slots=True)
class Notify:
    contact: int


@dataclass(frozen=True, slots=True)
class TimedOut:
    contact: int


@dataclass(frozen=True, slots=True)
class Answered:
    contact: int
    answer: Answer
    cancel_candidate: bool  # "she is fine": the operator may cancel with this reason


@dataclass(frozen=True, slots=True)
class Exhausted:
    pass


Decision = Notify | TimedOut | Answered | Exhausted


def start(contacts: list[tuple[str, str, str]], window_s: float,
          now: datetime) -> tuple[Cascade, list[Decision]]:
    """``contacts``: (name, phone, relation) in the site file's order."""
    c = Cascade(tuple(Step(n, p, r) for n, p, r in contacts), window_s)
    return _next(c, 0, now, [])


def _next(c: Cascade, index: int, now: datetime,
          out: list[Decision]) -> tuple[Cascade, list[Decision]]:
    if index >= len(c.steps):
        out.append(Exhausted())
        return replace(c, current=None, outcome="exhausted"), out
    steps = list(c.steps)
    steps[index] = replace(steps[index], notified_at=now,
                           deadline=now + timedelta(seconds=c.window_s))
    out.append(Notify(index))
    return replace(c, steps=tuple(steps), current=index), out


def tick(c: Cascade, now: datetime) -> tuple[Cascade, list[Decision]]:
    """The current window ended at or before ``now``: on to the next contact."""
    deadline = c.deadline
    if deadline is None or now < deadline or c.current is None:
        return c, []
    steps = list(c.steps)
    steps[c.current] = replace(steps[c.current], timed_out=True)
    return _next(replace(c, steps=tuple(steps)), c.current + 1, now, [TimedOut(c.current)])


def answer(c: Cascade, contact: int, ans: Answer,
           now: datetime) -> tuple[Cascade, list[Decision]]:
    """A contact's answer, whoever's window is open (a late "on my way" from the
    first still counts). An answer after the cascade ended is recorded only."""
    if not 0 <= contact < len(c.steps):
        raise ValueError(f"no contact {contact}")
    steps = list(c.steps)
    steps[contact] = replace(steps[contact], answer=ans, answered_at=now)
    c = replace(c, steps=tuple(steps))
    out: list[Decision] = [Answered(contact, ans, ans == "false_alarm")]
    if c.outcome is not None:
        return c, out
    if ans == "on_my_way":
        return replace(c, current=None, outcome="coming"), out
    if ans == "false_alarm":
        return replace(c, current=None, outcome="false_alarm"), out
    if contact == c.current:  # cannot go: the next one now
        return _next(c, contact + 1, now, out)
    return c, out
