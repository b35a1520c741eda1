"""The community filter of the incident list and the statistics: one community
(社区, a 12-digit grid code) of the deployment's compounds, inside the caller's
scope, combined with a grid filter that must lie inside it."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, status

from hub.api.deps import Principal, narrow_scope
from hub.config import Site
from hub.domain import GridLevel

CommunityCode = Annotated[str, Query(pattern=r"^\d{12}$",
                                     description="a community's 12-digit grid code")]


def community_scope(p: Principal, community: str | None, grid: str | None) -> str:
    """The subtree to list: the caller's scope narrowed by ``community``, then by
    ``grid``. A community outside the scope is 403 (as a grid is); a grid outside
    the community is 422, since nothing could match both."""
    if community is None:
        return narrow_scope(p, grid)
    scope = narrow_scope(p, community)
    if grid is None:
        return scope
    if grid.startswith(scope):
        return grid
    if scope.startswith(grid):
        return scope  # an ancestor of the community: the community is what is left
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                        f"grid {grid} is not inside community {community}")


def communities_of(site: Site, scope: str) -> list[tuple[str, str]]:
    """(code, name) of the site's communities inside ``scope``, or holding it."""
    return sorted((n.code, n.name) for n, _ in site.grid.walk()
                  if len(n.code) == GridLevel.COMMUNITY
                  and (n.code.startswith(scope) or scope.startswith(n.code)))
