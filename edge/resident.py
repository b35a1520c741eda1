"""A resident living alone, in a plausible daily rhythm: up around 06:30, meals, a
walk or shopping some mornings and afternoons, toilet and washing, a shower in the
evening, in bed around 21:30 with the odd trip to the toilet at night.

Pure and deterministic: what the resident does at a moment depends only on the seed,
the resident's id and the moment itself (never on when or in what steps it is
asked), so a history replayed in fast-forward is the same as living through it.
Times are data times; no wall clock is read here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from functools import lru_cache

TICK_S = 10  # resolution of the resident's behaviour, in data seconds
P_MOVE_AWAKE = 0.35  # chance the PIR sees the resident in a tick while up and at home
P_MOVE_ASLEEP = 0.002


@dataclass(frozen=True, slots=True)
class Act:
    """Something the resident did: ``motion``, ``leave``, ``return``, ``water``."""

    ts: datetime
    what: str
    litres: float = 0.0


@dataclass(frozen=True, slots=True)
class DayPlan:
    wake_s: int  # seconds after local midnight
    sleep_s: int
    outings: tuple[tuple[int, int], ...]  # (leave, return), seconds after midnight
    water: tuple[tuple[int, float], ...]  # (when, litres)

    def asleep(self, s: int) -> bool:
        return s < self.wake_s or s >= self.sleep_s

    def away(self, s: int) -> bool:
        return any(a <= s < b for a, b in self.outings)


@lru_cache(maxsize=4096)
def day_plan(seed: int, resident: str, day: date) -> DayPlan:
    rng = random.Random(f"{seed}:{resident}:{day.isoformat()}")
    wake = int(6.5 * 3600 + rng.gauss(0, 1200))
    sleep = int(21.5 * 3600 + rng.gauss(0, 1200))
    outings: list[tuple[int, int]] = []
    if rng.random() < 0.7:  # a morning walk or market trip
        t = int(9 * 3600 + rng.uniform(0, 3600))
        outings.append((t, t + int(rng.uniform(40, 100) * 60)))
    if rng.random() < 0.4:  # an afternoon out
        t = int(15 * 3600 + rng.uniform(0, 3600))
        outings.append((t, t + int(rng.uniform(30, 90) * 60)))
    water: list[tuple[int, float]] = [
        (wake + 300, round(rng.uniform(4, 9), 1)),  # wash
        (wake + 3600, round(rng.uniform(2, 5), 1)),  # breakfast
        (12 * 3600 + int(rng.uniform(-900, 900)), round(rng.uniform(3, 7), 1)),  # lunch
        (18 * 3600 + int(rng.uniform(-900, 900)), round(rng.uniform(3, 7), 1)),  # dinner
        (sleep - 1800, round(rng.uniform(25, 45), 1)),  # shower
    ]
    for _ in range(rng.randint(4, 7)):  # toilet flushes while up
        water.append((int(rng.uniform(wake, sleep)), 6.0))
    if rng.random() < 0.5:  # a night trip to the toilet
        water.append((int(rng.uniform(1, 4) * 3600), 6.0))
    return DayPlan(wake, sleep, tuple(outings), tuple(sorted(water)))


@dataclass
class Resident:
    """One resident; ``still`` and ``no_water`` intervals come from scenarios."""

    id: str
    tz: tzinfo
    seed: int = 1
    still: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    no_water: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    def stop_moving(self, at: datetime, until: datetime | None = None) -> None:
        self.still.append((at, until))

    def resume(self, at: datetime) -> None:
        """End every still and no-water interval at ``at``."""
        self.still = [(a, b if b is not None and b <= at else at) for a, b in self.still if a < at]
        self.no_water = [(a, b if b is not None and b <= at else at)
                         for a, b in self.no_water if a < at]

    def stop_water(self, at: datetime, until: datetime | None = None) -> None:
        self.no_water.append((at, until))

    @staticmethod
    def _within(t: datetime, spans: list[tuple[datetime, datetime | None]]) -> bool:
        return any(a <= t and (b is None or t < b) for a, b in spans)

    def _local(self, t: datetime) -> tuple[DayPlan, int]:
        lt = t.astimezone(self.tz)
        s = lt.hour * 3600 + lt.minute * 60 + lt.second
        return day_plan(self.seed, self.id, lt.date()), s

    def state(self, t: datetime) -> str:
        """``still``, ``away``, ``asleep`` or ``active`` at ``t``."""
        if self._within(t, self.still):
            return "still"
        plan, s = self._local(t)
        if plan.away(s):
            return "away"
        return "asleep" if plan.asleep(s) else "active"

    def acts(self, t0: datetime, t1: datetime) -> list[Act]:
        """What the resident did in (t0, t1], in time order."""
        out: list[Act] = []
        k0 = math.floor(t0.timestamp() / TICK_S) + 1
        k1 = math.floor(t1.timestamp() / TICK_S)
        for k in range(k0, k1 + 1):
            ts = datetime.fromtimestamp(k * TICK_S, tz=t0.tzinfo)
            out.extend(self._tick(k, ts))
        return out

    def _tick(self, k: int, ts: datetime) -> list[Act]:
        if self._within(ts, self.still):
            return []
        plan, s = self._local(ts)
        prev = s - TICK_S
        acts: list[Act] = []
        for a, b in plan.outings:
            if prev < a <= s:
                acts.append(Act(ts, "leave"))
            if prev < b <= s:
                acts.append(Act(ts, "return"))
        if plan.away(s):
            return acts
        rng = random.Random(f"{self.seed}:{self.id}:{k}")
        p = P_MOVE_ASLEEP if plan.asleep(s) else P_MOVE_AWAKE
        water_now = [litres for w, litres in plan.water if prev < w <= s]
        if water_now or rng.random() < p:
            acts.append(Act(ts, "motion"))  # using water means walking to the tap
        if water_now and not self._within(ts, self.no_water):
            acts.append(Act(ts, "water", sum(water_now)))
        return acts

    def last_act_before(self, t: datetime, lookback_s: float = 86400) -> datetime | None:
        acts = self.acts(t - timedelta(seconds=lookback_s), t)
        return acts[-1].ts if acts else None
