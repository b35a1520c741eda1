"""The grid tree (with open incidents per unit) and the people on it, cut to the
caller's subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from hub.api.community import communities_of
from hub.api.deps import Ctx, Reader, narrow_scope
from hub.store import incidents as store

router = APIRouter(prefix="/api", tags=["grid"])


class RoleOut(BaseModel):
    person_id: str
    name: str
    role: str
    on_duty: str | None = Field(description="duty hours, e.g. 08:00-20:00; null = always")


class UnitOut(BaseModel):
    code: str
    name: str
    level: int = Field(description="code length: 6 district, 9 street, 12 community, "
                       "14 grid, 16 micro-grid")
    parent: str | None
    open_incidents: int = Field(description="open incidents in this unit and beneath it")
    people: list[RoleOut]
    children: list[UnitOut]


class PersonRoleOut(BaseModel):
    role: str
    unit: str
    on_duty: str | None


class PersonOut(BaseModel):
    id: str
    name: str
    phone: str | None
    roles: list[PersonRoleOut]


def _duty(a: object) -> str | None:
    d = getattr(a, "on_duty", None)
    return f"{d[0].strftime('%H:%M')}-{d[1].strftime('%H:%M')}" if d else None


@router.get("/grid", response_model=UnitOut, summary="The grid tree under my scope",
            description="Rooted at the caller's scope unit (or at `grid`, inside it), with "
            "open incident counts per unit, subtree included.")
def grid_tree(ctx: Ctx, p: Reader,
              grid: Annotated[str | None, Query(pattern=r"^\d{6,16}$")] = None) -> UnitOut:
    scope = narrow_scope(p, grid)
    tree = ctx.tree
    root = scope or next(c for c, u in tree.units.items() if u.parent_code is None)
    if root not in tree.units:
        raise HTTPException(404, f"unknown grid code {root}")
    with ctx.pool.connection() as conn:
        counts = store.open_counts(conn, root)

    holders: dict[str, list[RoleOut]] = {}
    for person in ctx.site.people:
        for a in person.roles:
            holders.setdefault(a.unit, []).append(RoleOut(
                person_id=person.id, name=person.name, role=a.role, on_duty=_duty(a)))

    def build(code: str) -> UnitOut:
        u = tree.units[code]
        people = holders.get(code, [])
        return UnitOut(
            code=code, name=u.name, level=len(code), parent=u.parent_code,
            open_incidents=sum(n for c, n in counts.items() if c.startswith(code)),
            people=people, children=[build(c.code) for c in tree.children(code)],
        )

    return build(root)


@router.get("/people", response_model=list[PersonOut],
            summary="People with roles in my subtree or above it (my escalation chain)")
def people(ctx: Ctx, p: Reader) -> list[PersonOut]:
    out = []
    for person in ctx.site.people:
        roles = [a for a in person.roles
                 if a.unit.startswith(p.scope_code) or p.scope_code.startswith(a.unit)]
        if roles:
            out.append(PersonOut(id=person.id, name=person.name, phone=person.phone,
                                 roles=[PersonRoleOut(role=a.role, unit=a.unit,
                                                      on_duty=_duty(a)) for a in roles]))
    return out


class CommunityOut(BaseModel):
    code: str
    name: str
    site_id: str = Field(description="the compound (site file) the community belongs to")
    site_name: str


@router.get("/communities", response_model=list[CommunityOut],
            summary="The communities under my scope (the console's community filter)",
            description="Every community (12-digit code) inside the caller's scope, or the "
            "one holding it; pass one as `community` to /api/incidents and /api/stats.")
def communities(ctx: Ctx, p: Reader) -> list[CommunityOut]:
    site = ctx.site
    return [CommunityOut(code=code, name=name, site_id=site.site.id, site_name=site.site.name)
            for code, name in communities_of(site, p.scope_code)]
