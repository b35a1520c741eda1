"""Silences and maintenance windows: alarms that match one open no incident."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from hub.api.deps import Ctx, Principal, Reader, check_scope, require
from hub.categories import Code

router = APIRouter(prefix="/api/silences", tags=["silences"])
Manager = Annotated[Principal, Depends(require("admin", "operator"))]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str | None = Field(default=None, max_length=64)
    zone: str | None = Field(default=None, max_length=64)
    subject_id: str | None = Field(default=None, max_length=64)
    category: Code | None = None  # a registered category code (GET /api/meta)
    grid_code: str | None = Field(default=None, pattern=r"^\d{6,16}$")
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(min_length=1, max_length=500)
    maintenance: bool = False

    @model_validator(mode="after")
    def _sane(self) -> SilenceIn:
        if not any((self.device_id, self.zone, self.subject_id, self.category, self.grid_code)):
            raise ValueError("a silence must match something: device_id, zone, subject_id, "
                             "category or grid_code")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SilenceOut(BaseModel):
    id: int
    device_id: str | None
    zone: str | None
    subject_id: str | None
    category: str | None
    grid_code: str | None
    start: datetime
    end: datetime
    reason: str
    created_by: str
    maintenance: bool


_COLS = ("id, device_id, zone, subject_id, category, grid_code, starts_at AS start,"
         " ends_at AS \"end\", reason, created_by, maintenance")


def _grid_of(ctx: Ctx, body: SilenceIn) -> str | None:
    if body.grid_code:
        return body.grid_code
    if body.device_id:
        d = ctx.site.device(body.device_id)
        if d is None:
            raise HTTPException(422,
                                f"unknown device {body.device_id!r}")
        return str(d.grid)
    if body.subject_id:
        s = ctx.site.subject(body.subject_id)
        if s is None:
            raise HTTPException(422,
                                f"unknown care subject {body.subject_id!r}")
        return str(s.grid)
    return None


@router.get("", response_model=list[SilenceOut], summary="Silences that have not ended")
def list_silences(ctx: Ctx, p: Reader) -> list[SilenceOut]:
    with ctx.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_COLS} FROM silences WHERE ends_at > now()"
                           " AND starts_with(coalesce(grid_code, ''), %s) ORDER BY starts_at",
                           (p.scope_code,)).fetchall()
    return [SilenceOut.model_validate(r) for r in rows]


@router.post("", response_model=SilenceOut, status_code=201,
             summary="Silence alarms of a device, zone, subject, category or grid subtree",
             description="A silence given by device or care subject is pinned to that "
             "one's grid unit, so it never reaches beyond it.")
def create_silence(body: SilenceIn, ctx: Ctx, p: Manager) -> SilenceOut:
    if body.category is not None and body.category not in ctx.site.registry:
        raise HTTPException(422, f"unknown category {body.category!r} (GET /api/meta lists them)")
    grid = _grid_of(ctx, body)
    if p.scope_code:
        if grid is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                "a site-wide silence needs a site-wide scope")
        check_scope(p, grid, "silence")
    with ctx.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"INSERT INTO silences (device_id, zone, subject_id, category, grid_code,"
            f" starts_at, ends_at, reason, created_by, maintenance)"
            f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLS}",
            (body.device_id, body.zone, body.subject_id,
             body.category, grid, body.start,
             body.end, body.reason, p.user_id, body.maintenance),
        ).fetchone()
    if ctx.alerts is not None:
        ctx.alerts.reload_silences()
    return SilenceOut.model_validate(row)


@router.delete("/{silence_id}", status_code=204, summary="End a silence now")
def delete_silence(silence_id: int, ctx: Ctx, p: Manager) -> None:
    with ctx.pool.connection() as conn:
        row = conn.execute("SELECT grid_code FROM silences WHERE id = %s",
                           (silence_id,)).fetchone()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id}")
        if p.scope_code:
            check_scope(p, row[0], "silence")
        conn.execute("UPDATE silences SET ends_at = greatest(starts_at + interval '1 second',"
                     " now()) WHERE id = %s", (silence_id,))
    if ctx.alerts is not None:
        ctx.alerts.reload_silences()
