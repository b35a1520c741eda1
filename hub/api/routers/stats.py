"""Statistics per grid unit and period, as grid governance counts them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.community import CommunityCode, community_scope
from hub.api.deps import AppContext, Ctx, Reader
from hub.clock import SystemClock
from hub.stats_export import XLSX, stats_tables, to_csv, to_xlsx
from hub.store.stats import Bucket, incident_stats, incident_trend

router = APIRouter(prefix="/api/stats", tags=["statistics"])


class Figures(BaseModel):
    total: int
    open: int
    closed: int
    cancelled: int = Field(description="cancelled as false alarms")
    handled_in_grid: int = Field(description="closed without any escalation (小事不出网格)")
    escalated: int = Field(description="a time limit ran out at least once")
    open_in_grid: int = Field(0, description="open and never escalated")
    escalated_kept: int = Field(0, description="escalated and not cancelled; with "
                                "handled_in_grid, open_in_grid and cancelled a partition "
                                "of total (for a stacked bar)")
    median_accept_s: float | None = Field(description="first alarm to accepted, median")
    median_close_s: float | None = Field(description="first alarm to closed, median")
    false_share: float | None = Field(description="cancelled / (closed + cancelled)")
    returned: int = Field(default=0, description="returned by an assignee at least once (退回)")
    parked: int = Field(default=0, description="parked now (挂账); counted in open too")
    supervised: int = Field(default=0, description="supervised at least once (督办)")
    self_handled: int = Field(default=0, description="closed and never transferred "
                              "(小事不出网格)")
    transferred: int = Field(default=0, description="escalated, or dispatched to someone "
                             "outside the case's grid")


class StatsOut(BaseModel):
    scope: str
    since: datetime
    until: datetime
    totals: Figures
    by_category: dict[str, Figures]
    by_unit: dict[str, Figures] = Field(description="per child grid unit of the scope")


def _period(ctx: AppContext, since: datetime | None, until: datetime | None
            ) -> tuple[datetime, datetime]:
    now = ctx.alerts.clock.now() if ctx.alerts is not None else SystemClock().now()
    until = until or now
    if since is None:
        try:
            since = until - timedelta(days=30)
        except OverflowError:  # until in the first days of year 1
            raise HTTPException(422, "until is too early for the default 30-day period;"
                                " give since") from None
    if until <= since:
        raise HTTPException(422, "until must be after since")
    return since, until


Grid = Annotated[str | None, Query(pattern=r"^\d{6,16}$")]


@router.get("", response_model=StatsOut, summary="Incident statistics for a grid unit and period",
            description="Incidents whose first alarm lies in [since, until); default the "
            "last 30 days, for the caller's whole scope.")
def stats(
    ctx: Ctx, p: Reader, grid: Grid = None, community: CommunityCode | None = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,
) -> StatsOut:
    scope = community_scope(p, community, grid)
    since, until = _period(ctx, since, until)
    with ctx.pool.connection() as conn:
        return StatsOut.model_validate(incident_stats(conn, scope, since, until))


class TrendPoint(BaseModel):
    start: date = Field(description="the day, or the Monday of the week, in the site's time zone")
    counts: dict[str, int] = Field(description="incidents by category")


class TrendOut(BaseModel):
    scope: str
    bucket: Bucket
    timezone: str
    points: list[TrendPoint] = Field(description="buckets with at least one incident, oldest first")


@router.get("/trend", response_model=TrendOut, summary="Incidents per day or week, by category",
            description="Incidents whose first alarm lies in [since, until) (default the last "
            "30 days) in the caller's scope, counted per day or ISO week of the site's time zone.")
def trend(
    ctx: Ctx, p: Reader, grid: Grid = None, community: CommunityCode | None = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,
    bucket: Bucket = "day",
) -> TrendOut:
    scope = community_scope(p, community, grid)
    since, until = _period(ctx, since, until)
    tz = ctx.site.site.timezone
    with ctx.pool.connection() as conn:
        points = incident_trend(conn, scope, since, until, bucket, tz)
    return TrendOut(scope=scope, bucket=bucket, timezone=tz,
                    points=[TrendPoint.model_validate(x) for x in points])


@router.get("/export", summary="The statistics as a CSV or Excel file",
            description="What GET /api/stats and /api/stats/trend give for the same scope and "
            "period, as rows: totals, per category, per child grid unit, and the daily trend. "
            "Scoped to the caller's grids like the statistics.",
            responses={200: {"content": {"text/csv": {}, XLSX: {}}}})
def export(
    ctx: Ctx, p: Reader, grid: Grid = None, community: CommunityCode | None = None,
    since: AwareDatetime | None = None, until: AwareDatetime | None = None,
    format: Literal["csv", "xlsx"] = "csv",  # noqa: A002 - the query parameter's name
) -> Response:
    scope = community_scope(p, community, grid)
    since, until = _period(ctx, since, until)
    tz = ctx.site.site.timezone
    with ctx.pool.connection() as conn:
        st = incident_stats(conn, scope, since, until)
        tr = incident_trend(conn, scope, since, until, "day", tz)
    names = {n.code: n.name for n, _ in ctx.site.grid.walk()}
    tables = stats_tables(st, tr, names)
    stem = f"stats-{scope or 'site'}-{since:%Y%m%d}-{until:%Y%m%d}"
    if format == "xlsx":
        return Response(to_xlsx(tables), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{stem}.xlsx"'})
    return Response(to_csv(tables), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'})
