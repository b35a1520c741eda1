"""What the console needs to draw incidents: the category registry (labels, icon,
colour, severity, time limits) and the incident lifecycle (states, the actions each
allows, where they lead, labels). The browser keeps no copy of either; it loads this
once at start."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hub.alerts import lifecycle
from hub.api.deps import Ctx, Reader
from hub.grid.tree import LEVEL_NAMES, LEVEL_NAMES_EN

router = APIRouter(prefix="/api", tags=["meta"])


class Labels(BaseModel):
    zh: str
    en: str


class CategorySla(BaseModel):
    accept_s: float = Field(description="time limit to accept after dispatch")
    handle_s: float = Field(description="time limit to handle after accept")
    notify_levels: int = Field(description="escalation levels told at once")
    group_s: float = Field(description="alarms this close about one place join")


class CategoryOut(BaseModel):
    code: str
    case_code: str = Field(description="GB/T 30428-style case code")
    labels: Labels
    severity: Literal["info", "minor", "major", "critical"]
    life_safety: bool
    verify_required: bool = Field(default=False, description="closing waits for an on-site "
                                  "check (verify) by someone other than the handler")
    route: Literal["grid", "property"] = Field(
        description="grid: the grid workers' chain; property: property management first")
    icon: str
    colour: str
    inhibits: list[str]
    groups: bool
    sla: CategorySla
    evidence_labels: dict[str, Labels] = Field(
        description="labels of the evidence numbers this category's alarms carry")


class StateOut(BaseModel):
    code: str
    open: bool
    initial: bool = Field(description="the state a new incident starts in")
    labels: Labels
    actions: list[str] = Field(description="actions people may take from this state "
                               "(a role may allow fewer)")


class TransitionOut(BaseModel):
    action: str
    from_: list[str] = Field(alias="from")
    to: str | None = Field(description="null: the state does not change")
    needs_reason: bool
    needs_assignee: bool
    needs_review_at: bool = Field(default=False, description="park: a review date")


class LifecycleOut(BaseModel):
    states: list[StateOut]
    transitions: list[TransitionOut]
    actions: dict[str, Labels] = Field(description="labels of every audit action")


class EscalationLevelOut(BaseModel):
    level: int
    labels: Labels


class ConsoleOut(BaseModel):
    reminder_s: float = Field(description="how often the console rings and reminds again "
                              "while a critical incident stays unregistered")


class MetaOut(BaseModel):
    categories: list[CategoryOut]
    lifecycle: LifecycleOut
    severities: list[Literal["critical", "major", "minor", "info"]] = Field(
        description="most severe first")
    escalation_levels: list[EscalationLevelOut] = Field(
        description="the escalation chain (an incident's escalation_level indexes it)")
    console: ConsoleOut


@router.get("/meta", response_model=MetaOut, response_model_by_alias=True,
            summary="Categories and the incident lifecycle, for the console")
def meta(ctx: Ctx, p: Reader) -> dict[str, Any]:
    del p  # every signed-in role may read it; nothing in it is scoped
    return {
        "categories": [c.to_api() for c in ctx.site.registry],
        "lifecycle": lifecycle.describe(),
        "severities": ["critical", "major", "minor", "info"],
        "escalation_levels": [{"level": i, "labels": {"zh": zh, "en": en}}
                              for i, (zh, en) in enumerate(zip(LEVEL_NAMES, LEVEL_NAMES_EN,
                                                               strict=True))],
        "console": {"reminder_s": ctx.console_reminder_s},
    }
