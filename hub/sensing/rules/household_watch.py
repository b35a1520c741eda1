"""A rule that watches each care household for something missing over a window
(no activity, no water): one state per household, started at the household's first
data (the baseline) and moved back by earlier data from a replay, and a deadline
checked for every household it has a state for."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from hub.config import CareSubject
from hub.domain import Alarm
from hub.sensing.base import RuleBase, SensingContext


class Baselined(Protocol):
    baseline: datetime | None


S = TypeVar("S", bound=Baselined)


class HouseholdWatchRule(RuleBase, Generic[S], ABC):
    state_type: ClassVar[type[Any]]  # built as state_type(baseline=ts)

    def __init__(self, ctx: SensingContext) -> None:
        super().__init__(ctx)
        self.subjects: dict[str, S] = {}

    def _state(self, sid: str, ts: datetime) -> S:
        st = self.subjects.get(sid)
        if st is None:
            st = self.subjects[sid] = self.state_type(baseline=ts)
        elif st.baseline is None or ts < st.baseline:
            st.baseline = ts
        return st

    def tick(self, now: datetime) -> list[Alarm]:
        out: list[Alarm] = []
        for s in self.ctx.site.care_subjects:
            if s.id in self.subjects:
                out += self.ctx.contained("subject", s.id, now, self.check, s, now)
        return out

    @abstractmethod
    def check(self, s: CareSubject, now: datetime) -> list[Alarm]:
        """The household's deadline at ``now``: the alarms it raises."""
