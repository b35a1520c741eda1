"""The sensing host: routes the non-visual sensors' messages to the sensing rules
(``hub.sensing.rules``, one module per family) and keeps what they share.

Pure and clocked by the data's own timestamps: ``on_message`` takes a validated
Telemetry/Event/Status and returns the alarms it causes; ``tick(now)`` evaluates the
deadlines (inactivity, no water, missed heartbeats) when no message arrives. Alarms
raised by a deadline carry the deadline as their timestamp, so a late tick or a
replay gives the same alarms to the second.

What the host keeps for every rule:

* which device is whose (the site file: a message from a device it does not know
  reaches no rule — the ingest counts those);
* device presence (``rules.offline.OfflineRule``, the :class:`~hub.sensing.base.Presence`
  the other rules ask). A message reaches the other rules first and presence last,
  so a rule judging a deadline that ran out before this message judges it on what
  was known before it; a tick runs presence first, so a sensor found offline in this
  tick already inhibits its household's inactivity alarm;
* containment: one device's, household's or rule's data cannot stop the rules for
  the others. Every rule's handling of a message, every device check and household
  check runs on its own; one that raises is logged with the device, household or
  rule, counted (``on_problem``) and skipped. A device time the rules cannot compute
  with (the year 9999 overflowed every deadline; the ingest now rejects such times,
  ``hub.protocol.check_device_time``) is dropped from the state when found, and from
  a restored snapshot before its first tick;
* the saved state: one section per rule, by the rule's ``name``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hub.config import DeviceConfigEntry, Rules, Site
from hub.domain import Alarm
from hub.grid.tree import GridTree
from hub.protocol import DEFAULT_MAX_CLOCK_SKEW_S, TS_FLOOR, Message
from hub.sensing.base import DeviceProblems, Incoming, Presence, Repair, SensingRule
from hub.sensing.rules import DEFAULT_RULES, RuleFactory
from hub.sensing.rules.offline import OfflineRule
from hub.sensing.snapshots import SNAPSHOT_VERSION, upgrade

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# One log record per device or household and kind of problem in this many seconds:
# a check that keeps failing runs every tick.
PROBLEM_LOG_PERIOD_S = 60.0


class SensingEngine:
    def __init__(self, site: Site, tree: GridTree | None = None, watch_unseen: bool = False,
                 *, max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
                 on_problem: Callable[[str, str], None] | None = None,
                 rules: Iterable[RuleFactory] | None = None):
        """``watch_unseen``: also raise offline for devices never heard from, counted
        from the first data the engine sees. Off by default: a device that never
        connected cannot be told from one not installed yet, and its retained
        offline Status (Last Will) covers the usual case.

        ``max_skew_s``: how far past the hub's time a device time may lie (the
        ingest's bound). ``on_problem(kind, id)`` is told of every contained problem:
        ``device_failed`` / ``subject_failed`` / ``rule_failed`` (a check raised),
        ``future_ts_repaired`` (state held an impossible time, dropped) and
        ``message_ignored`` (a message with an impossible time) and
        ``reading_out_of_range`` (a device-health reading no device can give, e.g. a
        battery of 250 %: the rules skip it, the store keeps it); ``problems``
        counts them too. ``rules``: the rules to host (``hub.sensing.rules.DEFAULT_RULES``
        when not given); presence and the offline rule always run."""
        self.max_skew = timedelta(seconds=max_skew_s)
        self.on_problem = on_problem
        self.problems: Tally[str] = Tally()
        self._logged: dict[tuple[str, str], float] = {}
        self._repair_due = False
        self.site = site
        self.tree = tree or GridTree.from_site(site)
        self.tz = ZoneInfo(site.site.timezone)
        self.watch_unseen = watch_unseen
        self.started: datetime | None = None
        self._household: dict[str, list[DeviceConfigEntry]] = {}
        for d in site.devices:
            if d.subject:
                self._household.setdefault(d.subject, []).append(d)
        self._presence = OfflineRule(self)
        self.hosted: list[SensingRule] = [make(self) for make in
                                          (DEFAULT_RULES if rules is None else rules)]
        names = [r.name for r in self.all_rules]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"sensing rules need distinct, non-empty names: {names}")

    # ------------------------------------------------------------ what rules see

    @property
    def rules(self) -> Rules:
        return self.site.rules

    @property
    def presence(self) -> Presence:
        return self._presence

    @property
    def all_rules(self) -> list[SensingRule]:
        return [self._presence, *self.hosted]

    def rule(self, name: str) -> SensingRule:
        for r in self.all_rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def household(self, subject_id: str) -> Sequence[DeviceConfigEntry]:
        return self._household.get(subject_id, ())

    def report(self, kind: str, device_id: str, msg: str, **extra: Any) -> None:
        self._problem(kind, "device", device_id, msg, **extra)

    def device_problems(self, device_id: str) -> list[str]:
        out: list[str] = []
        for rule in self.hosted:
            if isinstance(rule, DeviceProblems):
                out += rule.device_problems(device_id)
        return out

    # ------------------------------------------------------------ entry points

    def on_message(self, msg: Message, received_at: datetime | None = None) -> list[Alarm]:
        """``received_at``: when the hub received it (hub time), for liveness; the
        message's own ``ts`` when not given (a replay of recorded data)."""
        dev = self.site.device(msg.device)
        if dev is None:
            return []  # ingest counts unknown devices; nothing to reason about here
        if received_at is not None and not self._plausible(msg.ts, received_at):
            # The ingest rejects these; any other path (a bridge) is bounded here.
            self._problem("message_ignored", "device", dev.id,
                          "message with an impossible device time ignored", ts=msg.ts.isoformat())
            return []
        self._start(msg.ts)
        heard = received_at or msg.ts
        self._presence.heard(dev.id, heard)
        subject = self.site.subject(dev.subject) if dev.subject else None
        m = Incoming(msg, dev, subject, heard)
        out: list[Alarm] = []
        for rule in (*self.hosted, self._presence):
            out += self.contained("device", dev.id, heard, rule.on_message, m)
        return out

    def seen(self, device_id: str, ts: datetime) -> list[Alarm]:
        """A sign of life that is not a JSON message (a camera frame)."""
        dev = self.site.device(device_id)
        if dev is None:
            return []
        self._start(ts)
        return self.contained("device", dev.id, ts, self._presence.seen, dev, ts)

    def tick(self, now: datetime) -> list[Alarm]:
        """Evaluate every deadline at ``now``: presence first (see the module)."""
        if now.tzinfo is None:
            raise ValueError("tick() needs an aware datetime")
        if self._repair_due:
            self._repair_due = False
            self.repair(now)
        self._start(now)
        out: list[Alarm] = []
        for rule in self.all_rules:
            out += self.contained("rule", rule.name, now, rule.tick, now)
        return out

    # ------------------------------------------------------------ containment

    def _plausible(self, ts: datetime, now: datetime) -> bool:
        return TS_FLOOR <= ts <= now + self.max_skew

    def contained(self, scope: str, ident: str, now: datetime,
                  check: Callable[..., list[_T]], *args: Any) -> list[_T]:
        """``check(*args)``, or nothing when it raises: the failure is logged with
        the device, household or rule, counted, and the state repaired of impossible
        times (the one cause known), so the other checks of this tick still run."""
        try:
            return check(*args)
        except Exception as e:  # noqa: BLE001 - one household must not stop the rest
            rule = getattr(getattr(check, "__self__", None), "name", None)
            self._problem(f"{scope}_failed", scope, ident, "sensing check failed; skipped",
                          error=f"{type(e).__name__}: {e}"[:300], exc_info=True,
                          **({"rule": rule} if rule and scope != "rule" else {}))
            self.repair(now)
            return []

    def _problem(self, kind: str, scope: str, ident: str, msg: str, *,
                 exc_info: bool = False, **extra: Any) -> None:
        self.problems[kind] += 1
        if self.on_problem is not None:
            try:
                self.on_problem(kind, ident)
            except Exception:  # noqa: BLE001 - a counter must not break a rule
                log.exception("sensing problem hook failed")
        key, t = (kind, ident), time.monotonic()
        if t - self._logged.get(key, -PROBLEM_LOG_PERIOD_S) >= PROBLEM_LOG_PERIOD_S:
            self._logged[key] = t
            level = logging.ERROR if kind.endswith("_failed") else logging.WARNING
            log.log(level, msg, exc_info=exc_info,
                    extra={scope: ident, "problem": kind, "count": self.problems[kind], **extra})

    def repair(self, now: datetime) -> int:
        """Drop every time in the state that is later than ``now`` plus the skew or
        before ``hub.protocol.TS_FLOOR``: no device can have sent it, and one such
        time overflows the deadlines computed from it (9999) or outranks all later
        data (a status from 2099). Returns how many devices and households changed;
        each is logged and counted as ``future_ts_repaired``."""
        limit = now + self.max_skew
        if self.started is not None and not TS_FLOOR <= self.started <= limit:
            self.started = None
        dropped: dict[tuple[str, str], list[str]] = {}
        for rule in self.all_rules:
            try:
                repairs: list[Repair] = rule.repair(limit, now)
            except Exception as e:  # noqa: BLE001 - the other rules' state is repaired
                self._problem("rule_failed", "rule", rule.name, "sensing repair failed",
                              error=f"{type(e).__name__}: {e}"[:300], exc_info=True)
                continue
            for r in repairs:
                dropped.setdefault((r.scope, r.ident), []).extend(r.fields)
        for (scope, ident), names in dropped.items():
            self._problem("future_ts_repaired", scope, ident,
                          "sensing state held device times from the future or before"
                          " the floor; dropped them", fields=",".join(names),
                          bound=limit.isoformat())
        return len(dropped)

    def _start(self, ts: datetime) -> None:
        if self.started is None or ts < self.started:
            self.started = ts

    # ------------------------------------------------------------ saved state

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "started": self.started.isoformat() if self.started else None,
            "rules": {r.name: r.snapshot() for r in self.all_rules},
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Restore a snapshot of this or an earlier version (upgraded, with a log
        line). A rule whose section does not restore starts empty, logged and
        counted as ``rule_failed``; the others keep theirs."""
        snap = upgrade(snap)
        self.started = datetime.fromisoformat(snap["started"]) if snap.get("started") else None
        sections = snap.get("rules") or {}
        for rule in self.all_rules:
            try:
                rule.restore(sections.get(rule.name) or {})
            except Exception as e:  # noqa: BLE001 - one rule's section must not lose the rest
                self._problem("rule_failed", "rule", rule.name,
                              "sensing state of a rule did not restore; it starts empty",
                              error=f"{type(e).__name__}: {e}"[:300])
                rule.restore({})
        unknown = sorted(set(sections) - {r.name for r in self.all_rules})
        if unknown:
            log.warning("saved sensing state of rules not hosted now dropped",
                        extra={"rules": ",".join(unknown)})
        # A snapshot saved before device time was bounded may hold the year 9999; the
        # first tick (which knows the time) drops such times before any check runs.
        self._repair_due = True
