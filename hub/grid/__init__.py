"""Grid tree, people and duty, routing and the escalation chain."""

from hub.grid.tree import (
    LEVEL_NAMES,
    TOP_LEVEL,
    GridTree,
    Level,
    Recipient,
    UnknownUnit,
)

__all__ = [
    "LEVEL_NAMES",
    "TOP_LEVEL",
    "GridTree",
    "Level",
    "Recipient",
    "UnknownUnit",
]
