"""Statistics per grid unit and period, as grid governance counts them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, BaseModel, Field

from hub.api.community import CommunityCode, community_scope
from hub.api.deps import Ctx, Reader
from hub.clock import SystemClock
from hub.store.stats import incident_stats

router = APIRouter(prefix="/api/stats", tags=["statistics"])


class Figures(BaseModel):
    total: int
    open: int
    closed: int
    cancelled: int = Field(description="cancelled as false alarms")
    handled_in_grid: int = Field(description="closed without any escalation (小事不出网格)")
    escalated: int = Field(description="a time limit ran out at least once")
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


@router.get("", response_model=StatsOut, summary="Incident statistics for a grid unit and period",
            description="Incidents whose first alarm lies in [since, until); default the "
            "last 30 days, for the caller's whole scope.")
def stats(
    ctx: Ctx, p: Reader,
    grid: Annotated[str | None, Query(pattern=r"^\d{6,16}$")] = None,
    community: CommunityCode | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> StatsOut:
    scope = community_scope(p, community, grid)
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
    with ctx.pool.connection() as conn:
        return StatsOut.model_validate(incident_stats(conn, scope, since, until))
