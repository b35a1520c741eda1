"""The site plan for the console's map: buildings, grid units, cameras and sensors
with their positions, cut to the caller's grid subtree."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from hub.api import auth

router = APIRouter(prefix="/api/site", tags=["site"])

Me = Annotated[auth.UserPrincipal, Depends(auth.get_principal)]


class PlanBuilding(BaseModel):
    id: str
    name: str
    grid: str
    polygon: list[tuple[float, float]] = Field(description="0-1 plan coordinates")


class PlanDevice(BaseModel):
    id: str
    kind: str
    grid: str
    building: str | None
    subject: str | None
    x: float
    y: float
    label: str
    zones: list[dict] = Field(default_factory=list, description="camera zones, 0-1 image coords")


class PlanUnit(BaseModel):
    code: str
    name: str
    parent: str | None
    level: int = Field(description="code length: 6, 9, 12, 14 or 16")


class PlanSubject(BaseModel):
    id: str
    name: str
    address: str
    grid: str


class SitePlan(BaseModel):
    id: str
    name: str
    plan_size: tuple[int, int]
    scope_code: str
    units: list[PlanUnit]
    buildings: list[PlanBuilding]
    devices: list[PlanDevice]
    subjects: list[PlanSubject]


@router.get("/plan", response_model=SitePlan,
            summary="Site plan geometry inside my scope (for the map)")
def plan(me: Me, request: Request) -> SitePlan:
    site = request.app.state.ctx.site
    units = [PlanUnit(code=n.code, name=n.name, parent=parent, level=len(n.code))
             for n, parent in site.grid.walk()
             # Ancestors are shown too, by name only, so the map can title itself.
             if me.sees(n.code) or me.scope_code.startswith(n.code)]
    buildings = [PlanBuilding(id=b.id, name=b.name, grid=b.grid, polygon=list(b.polygon))
                 for b in site.buildings if me.sees(b.grid)]
    devices = [
        PlanDevice(id=d.id, kind=d.kind, grid=d.grid, building=d.building, subject=d.subject,
                   x=d.location.x, y=d.location.y, label=d.location.label or d.id,
                   zones=[{"name": z.name, "kind": z.kind, "polygon": list(z.polygon)}
                          for z in (d.camera.zones if d.camera else [])])
        for d in site.devices if me.sees(d.grid)
    ]
    subjects = [PlanSubject(id=s.id, name=s.name, address=s.address, grid=s.grid)
                for s in site.care_subjects if me.sees(s.grid)]
    return SitePlan(id=site.site.id, name=site.site.name, plan_size=site.site.plan_size,
                    scope_code=me.scope_code, units=units, buildings=buildings,
                    devices=devices, subjects=subjects)
