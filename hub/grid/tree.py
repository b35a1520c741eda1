"""The grid tree (区-街-社-格-微格), the people on it, and routing up the tree.

Codes are hierarchical (6 + 3 + 3 + 2 + 2 digits), so a unit's code is a prefix of
every code beneath it; ``contains`` is a prefix test and ancestors are prefixes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.categories import REGISTRY, CategoryRegistry, Route
from hub.config import Person, RoleAssignment, Site
from hub.domain import GridLevel, GridUnit
from hub.grid.duty import in_hours
from hub.grid.duty import on_duty as _on_duty

# Escalation chain: level -> (grid level the unit sits at, roles to notify).
# Level 0 walks up from the incident's own unit (micro-grid -> grid) to find a worker.
# A life-safety category (hub.categories) adds the police contact at level 2; a
# category routed to "property" starts at property management (物业) instead of the
# grid worker and climbs the same levels above it.
_CHAIN: tuple[tuple[GridLevel | None, tuple[str, ...]], ...] = (
    (None, ("grid_worker",)),
    (GridLevel.GRID, ("grid_leader",)),
    (GridLevel.COMMUNITY, ("community",)),
    (GridLevel.STREET, ("street",)),
    (GridLevel.DISTRICT, ("department",)),
)
TOP_LEVEL = len(_CHAIN) - 1
LEVEL_NAMES = ("网格员", "网格长", "社区", "街道", "部门")
LEVEL_NAMES_EN = ("Grid worker", "Grid leader", "Community", "Street", "Department")


class UnknownUnit(KeyError):
    """A grid code, device or subject that the site file does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Recipient:
    person_id: str
    name: str
    role: str
    unit_code: str
    phone: str | None
    on_duty: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "role": self.role,
            "unit_code": self.unit_code,
            "phone": self.phone,
            "on_duty": self.on_duty,
        }


@dataclass(frozen=True, slots=True)
class Level:
    level: int
    unit_code: str
    roles: tuple[str, ...]
    # Asked only when nobody up the tree holds any of ``roles``: a compound that names
    # no property staff keeps getting its maintenance incidents at the grid worker.
    otherwise: tuple[str, ...] = ()


class GridTree:
    def __init__(
        self,
        units: Iterable[GridUnit],
        people: Iterable[Person] = (),
        device_grid: dict[str, str] | None = None,
        subject_grid: dict[str, str] | None = None,
        timezone: str = "Asia/Shanghai",
        categories: CategoryRegistry | None = None,
    ) -> None:
        self.units: dict[str, GridUnit] = {}
        self._children: dict[str, list[str]] = {}
        for u in units:
            if u.code in self.units:
                raise ValueError(f"duplicate grid code {u.code}")
            self.units[u.code] = u
            self._children.setdefault(u.code, [])
        for u in self.units.values():
            if u.parent_code is not None:
                if u.parent_code not in self.units:
                    raise ValueError(f"grid unit {u.code}: unknown parent {u.parent_code}")
                self._children[u.parent_code].append(u.code)
        self.people: dict[str, Person] = {p.id: p for p in people}
        # unit code -> [(person, assignment)], in site-file order
        self._roles: dict[str, list[tuple[Person, RoleAssignment]]] = {}
        for p in self.people.values():
            for a in p.roles:
                self._roles.setdefault(a.unit, []).append((p, a))
        # Routing walks up the tree for every notification: keep each unit's path.
        self._up: dict[str, tuple[str, ...]] = {}
        for code in self.units:
            path = [code]
            while (p := self.units[path[-1]].parent_code) is not None:
                path.append(p)
            self._up[code] = tuple(path)
        self._chains: dict[tuple[str, bool, Route], tuple[Level, ...]] = {}
        self.categories = categories if categories is not None else REGISTRY
        self._device_grid = dict(device_grid or {})
        self._subject_grid = dict(subject_grid or {})
        self.tz = ZoneInfo(timezone)

    @classmethod
    def from_site(cls, site: Site) -> GridTree:
        units = [GridUnit(n.code, n.name, parent) for n, parent in site.grid.walk()]
        return cls(
            units,
            site.people,
            device_grid={d.id: d.grid for d in site.devices},
            subject_grid={s.id: s.grid for s in site.care_subjects},
            timezone=site.site.timezone,
            categories=site.registry,
        )

    # ------------------------------------------------------------ the tree

    def unit(self, code: str) -> GridUnit:
        try:
            return self.units[code]
        except KeyError:
            raise UnknownUnit(f"unknown grid code {code!r}") from None

    def parent(self, code: str) -> GridUnit | None:
        p = self.unit(code).parent_code
        return self.units[p] if p else None

    def children(self, code: str) -> list[GridUnit]:
        self.unit(code)
        return [self.units[c] for c in self._children[code]]

    def ancestors(self, code: str) -> list[GridUnit]:
        """Nearest first, the unit itself excluded."""
        out: list[GridUnit] = []
        u = self.parent(code)
        while u is not None:
            out.append(u)
            u = self.parent(u.code)
        return out

    def descendants(self, code: str) -> list[GridUnit]:
        self.unit(code)
        return [u for c, u in self.units.items() if c != code and c.startswith(code)]

    @staticmethod
    def contains(ancestor: str, code: str) -> bool:
        """True when ``code`` lies in the subtree of ``ancestor`` (itself included)."""
        return code.startswith(ancestor)

    def unit_of_device(self, device_id: str) -> GridUnit:
        code = self._device_grid.get(device_id)
        if code is None:
            raise UnknownUnit(f"unknown device {device_id!r}")
        return self.units[code]

    def unit_of_subject(self, subject_id: str) -> GridUnit:
        code = self._subject_grid.get(subject_id)
        if code is None:
            raise UnknownUnit(f"unknown care subject {subject_id!r}")
        return self.units[code]

    def locate(
        self,
        grid_code: str | None = None,
        device_id: str | None = None,
        subject_id: str | None = None,
    ) -> str | None:
        """The grid code of an alarm: its own, else its device's, else its subject's."""
        if grid_code and grid_code in self.units:
            return grid_code
        if device_id and device_id in self._device_grid:
            return self._device_grid[device_id]
        if subject_id and subject_id in self._subject_grid:
            return self._subject_grid[subject_id]
        return None

    # ------------------------------------------------------------ people

    def on_duty(self, person: Person | str, assignment: RoleAssignment, at: datetime) -> bool:
        del person  # duty hours live on the assignment; the person is for readability
        return _on_duty(assignment, at, self.tz)

    def holders(self, unit_code: str, role: str) -> list[tuple[Person, RoleAssignment]]:
        return [(p, a) for p, a in self._roles.get(unit_code, []) if a.role == role]

    def roles_of(self, person_id: str) -> list[RoleAssignment]:
        p = self.people.get(person_id)
        return list(p.roles) if p else []

    def recipient(self, person_id: str, at: datetime | None = None) -> Recipient | None:
        """A person as a recipient (e.g. the assignee of a dispatch), with their first
        role."""
        p = self.people.get(person_id)
        if p is None:
            return None
        if not p.roles:
            return Recipient(p.id, p.name, "", "", p.phone, True)
        a = p.roles[0]
        duty = True if at is None else _on_duty(a, at, self.tz)
        return Recipient(p.id, p.name, a.role, a.unit, p.phone, duty)

    # ------------------------------------------------------------ routing

    def _start_unit(self, grid_code: str, level: int) -> str:
        at_level = _CHAIN[level][0]
        if at_level is None or len(grid_code) <= at_level.value:
            return grid_code
        return grid_code[: at_level.value]

    def chain(self, grid_code: str, category: str | None = None) -> list[Level]:
        """The escalation chain of a unit: level 0 grid worker(s) (property staff for
        a category routed to property management), 1 grid leader, 2 community
        (+ police for life-safety categories), 3 street, 4 department."""
        return list(self._chain_of(grid_code, category))

    def _chain_of(self, grid_code: str, category: str | None) -> tuple[Level, ...]:
        return self._chain(grid_code, self.categories.life_safety(category),
                           self.categories.route(category))

    def _chain(self, grid_code: str, life_safety: bool, route: Route) -> tuple[Level, ...]:
        key = (grid_code, life_safety, route)
        hit = self._chains.get(key)
        if hit is not None:
            return hit
        self.unit(grid_code)
        out = []
        for level, (_, roles) in enumerate(_CHAIN):
            otherwise: tuple[str, ...] = ()
            if level == 0 and route == "property":
                roles, otherwise = ("property",), roles
            if level == 2 and life_safety:
                roles = roles + ("police",)
            out.append(Level(level, self._start_unit(grid_code, level), roles, otherwise))
        self._chains[key] = tuple(out)
        return self._chains[key]

    def _find(self, start: str, role: str, at: datetime) -> list[Recipient]:
        """Holders of ``role`` at ``start`` or, failing that, the nearest ancestor that
        has one. On-duty people first; if nobody is on duty anywhere up the tree, the
        nearest holders anyway (flagged off duty) so an alert is never lost."""
        local = at.astimezone(self.tz).time()
        nearest_off: list[Recipient] = []
        for code in self._up[start]:
            found = [
                Recipient(p.id, p.name, a.role, code, p.phone, in_hours(a.on_duty, local))
                for p, a in self.holders(code, role)
            ]
            on = [r for r in found if r.on_duty]
            if on:
                return on
            if found and not nearest_off:
                nearest_off = found
        return nearest_off

    def recipients(
        self,
        grid_code: str,
        level: int,
        at: datetime,
        category: str | None = None,
        fallback: bool = True,
    ) -> list[Recipient]:
        """People to notify for an incident in ``grid_code`` at escalation ``level``.
        With ``fallback``, a level where nobody holds the role passes to the next one
        up, so there is always someone to tell when anyone is configured."""
        if not 0 <= level <= TOP_LEVEL:
            raise ValueError(f"escalation level {level} is outside 0-{TOP_LEVEL}")
        if at.tzinfo is None:
            raise ValueError("recipients() needs an aware datetime (duty hours are local)")
        levels = self._chain_of(grid_code, category)
        for lv in levels[level:]:
            out = self._holders_of(lv, lv.roles, at) or self._holders_of(lv, lv.otherwise, at)
            if out or not fallback:
                return out
        return []

    def _holders_of(self, lv: Level, roles: tuple[str, ...], at: datetime) -> list[Recipient]:
        out: list[Recipient] = []
        seen: set[str] = set()
        for role in roles:
            for r in self._find(lv.unit_code, role, at):
                if r.person_id not in seen:
                    seen.add(r.person_id)
                    out.append(r)
        return out
