"""Incidents: list with filters and keyset paging, detail with timeline and evidence,
lifecycle transitions, the evidence image. Everything is cut to the caller's grid
subtree; an incident outside it is answered 403, its evidence image included."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hub.alerts.lifecycle import ConflictError, LifecycleError, allowed_actions, role_refusal
from hub.alerts.model import Action, Incident
from hub.alerts.service import incident_view
from hub.api.community import CommunityCode, community_scope
from hub.api.deps import Ctx, Principal, Reader, Writer, check_scope
from hub.api.files import storage_of, stored_file
from hub.categories import Code
from hub.domain import IncidentState, Severity
from hub.family import store as family_store
from hub.family.worker import view as family_view
from hub.residents import subject_card
from hub.store import incidents as store

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

GridPrefix = Annotated[str, Query(pattern=r"^\d{6,16}$", description="grid code (subtree)")]
SeverityName = Literal["info", "minor", "major", "critical"]
StateFilter = Literal["open", "reported", "registered", "cancelled", "dispatched", "accepted",
                      "handled", "closed", "parked"]


class IncidentOut(BaseModel):
    id: int
    dedup_key: str
    rule: str
    category: str = Field(description="a category code (GET /api/meta lists them)")
    severity: SeverityName
    state: IncidentState
    title: str
    grid_code: str | None
    device_id: str | None
    subject_id: str | None
    zone: str | None
    firing: bool = Field(description="false once the alarm cleared (the incident stays open)")
    alarm_count: int
    opened_at: datetime = Field(description="data timestamp of the first alarm")
    updated_at: datetime
    last_alarm_ts: datetime | None
    cleared_at: datetime | None
    escalation_level: int = Field(description="0 grid worker, 1 grid leader, 2 community, "
                                  "3 street, 4 department")
    escalations: int = Field(description="time limits that ran out")
    deadline_at: datetime | None = Field(description="when the running time limit ends")
    deadline_kind: Literal["accept", "handle"] | None
    assignee: str | None
    group_id: int | None = Field(description="the incident this one was grouped with")
    reported_at: datetime | None
    dispatched_at: datetime | None
    accepted_at: datetime | None
    handled_at: datetime | None
    closed_at: datetime | None
    review_at: datetime | None = Field(default=None, description="a parked incident's "
                                       "review date (挂账), when it returns to registered")
    supervised_by: str | None = Field(default=None, description="the higher level that "
                                      "flagged it as overdue (督办)")
    verified_by: str | None = Field(default=None, description="who made the on-site "
                                    "check (核查)")
    handled_by: str | None = Field(default=None, description="who marked it handled")
    evidence: dict[str, Any] = Field(description="the latest alarm's numbers (a clear's too)")
    firing_evidence: dict[str, Any] = Field(
        default_factory=dict, description="the numbers of the alarms that fired it (the "
        "latest firing run); a clear leaves them as they were")
    evidence_url: str | None = Field(description="the evidence snapshot (JPEG), if any")
    version: int = Field(description="pass as expected_version when acting on it")


def incident_out(inc: Incident) -> IncidentOut:
    return IncidentOut.model_validate(incident_view(inc))


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    reason: str | None
    data: dict[str, Any]
    source: str | None


class AlarmOut(BaseModel):
    alarm_id: str
    rule: str
    state: str
    severity: int
    ts: datetime
    outcome: str
    evidence: dict[str, Any]
    has_image: bool


class FlatOut(BaseModel):
    address: str
    building: str | None = None
    building_no: str | None = None
    unit: str | None = None
    floor: int | None = None
    room: str | None = None


class ContactOut(BaseModel):
    name: str
    phone: str
    relation: str


class SubjectOut(BaseModel):
    id: str
    name: str
    age: int | None
    lives_alone: bool
    flat: FlatOut
    contacts: list[ContactOut] = Field(description="emergency contacts, in calling order")


class IncidentDetail(BaseModel):
    incident: IncidentOut
    timeline: list[AuditOut] = Field(description="the append-only audit trail, oldest first")
    alarms: list[AlarmOut] = Field(description="the latest alarms that fed it, oldest first")
    allowed_actions: list[str] = Field(description="actions the state allows (the caller's "
                                       "role may allow fewer)")
    group: list[int] = Field(description="ids of incidents grouped with this one")
    family: dict[str, Any] | None = Field(
        default=None, description="the family-first cascade (hub.family): each emergency "
        "contact told, when, their window and answer (no phone numbers); cancel_candidate "
        "when one said she is fine")
    subject: SubjectOut | None = Field(
        default=None, description="the care subject it is about: profile, flat, emergency "
        "contacts with phone numbers (as scoped as the incident)")


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["register", "cancel", "dispatch", "accept", "handle", "close", "reopen",
                    "comment", "return", "park", "resume", "supervise", "verify"]
    reason: str | None = Field(default=None, max_length=2000,
                               description="why (required to cancel, reopen)")
    note: str | None = Field(default=None, max_length=4000,
                             description="what was done (required to handle; used as the "
                             "reason when none is given)")
    assignee: str | None = Field(default=None, max_length=64,
                                 description="person id (required to dispatch)")
    expected_version: int | None = Field(
        default=None, ge=1, description="the version the caller saw; 409 when it changed")
    review_at: AwareDatetime | None = Field(
        default=None, description="the review date (required to park: in the future, "
        "at most a year ahead)")


class ErrorOut(BaseModel):
    detail: str
    code: str | None = None


def _load(request: Request, ctx: Any, p: Principal, incident_id: int) -> Incident:
    with ctx.pool.connection() as conn:
        inc = store.get(conn, incident_id)
    if inc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}")
    if not p.is_assignee(inc.assignee):
        check_scope(p, inc.grid_code, "incident")
    return inc


@router.get("", response_model=IncidentPage,
            summary="List incidents, newest or most severe first",
            description="Filters combine with AND; repeat category/state for OR within one. "
            "`state=open` means every open state. `assignee=me` lists what is assigned to "
            "the caller's own person, inside their grid scope or not. `sort=severity` "
            "orders most severe first, then newest. Paging is by keyset: pass "
            "`next_cursor` with the same sort.")
def list_incidents(
    ctx: Ctx,
    p: Reader,
    category: Annotated[list[Code] | None, Query(max_length=50)] = None,
    state: Annotated[list[StateFilter] | None, Query()] = None,
    min_severity: SeverityName | None = None,
    grid: GridPrefix | None = None,
    community: CommunityCode | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    assignee: Annotated[str | None, Query(
        max_length=64, description="person id, or `me` for the caller's own person")] = None,
    subject: Annotated[str | None, Query(max_length=64)] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    sort: Literal["newest", "severity"] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentPage:
    unknown = [c for c in category or [] if c not in ctx.site.registry]
    if unknown:
        raise HTTPException(422, f"unknown category {unknown[0]!r} (GET /api/meta lists them)")
    if assignee == "me":
        if not p.person_id:
            raise HTTPException(422, "assignee=me needs a login linked to a person")
        # Only the caller's own incidents are listed, so the grid scope does not cut
        # them: an incident dispatched to them from another grid is theirs too.
        assignee = p.person_id
        scope = community_scope(replace(p, scope_code=""), community, grid)
    else:
        scope = community_scope(p, community, grid)
    f = store.Filters(
        scope=scope,
        category=list(category or []),
        state=list(state or []),
        min_severity=int(Severity.parse(min_severity)) if min_severity else None,
        since=since, until=until, assignee=assignee, subject_id=subject, device_id=device,
    )
    with ctx.pool.connection() as conn:
        try:
            items, nxt = store.list_incidents(conn, f, limit, cursor, sort)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
    return IncidentPage(items=[incident_out(i) for i in items], next_cursor=nxt)


@router.get("/{incident_id}", response_model=IncidentDetail,
            responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
            summary="One incident with its timeline, alarms and evidence link")
def get_incident(incident_id: int, request: Request, ctx: Ctx, p: Reader) -> IncidentDetail:
    inc = _load(request, ctx, p, incident_id)
    with ctx.pool.connection() as conn:
        tl = store.timeline(conn, incident_id)
        family = family_view(family_store.get(conn, incident_id))
        al = store.alarms_of(conn, incident_id)
        group = [r[0] for r in conn.execute(
            "SELECT id FROM incidents WHERE (group_id = %s OR id = %s) AND id <> %s"
            " ORDER BY id LIMIT 100", (incident_id, inc.group_id or -1, incident_id))]
    return IncidentDetail(
        incident=incident_out(inc),
        timeline=[AuditOut.model_validate(r) for r in tl],
        alarms=[AlarmOut(alarm_id=a["alarm_id"], rule=a["rule"], state=a["state"],
                         severity=a["severity"], ts=a["ts"], outcome=a["outcome"],
                         evidence=a["evidence"], has_image=bool(a["evidence_image"]))
                for a in al],
        allowed_actions=[a.value for a in allowed_actions(inc.state)],
        group=group,
        family=family,
        subject=_subject(ctx, inc),
    )


def _subject(ctx: Any, inc: Incident) -> SubjectOut | None:
    s = ctx.site.subject(inc.subject_id) if inc.subject_id else None
    if s is None:
        return None
    # The resident's local date, for the age.
    today = datetime.now(ZoneInfo(ctx.site.site.timezone)).date()
    return SubjectOut.model_validate(subject_card(s, ctx.site.buildings, today))


@router.post("/{incident_id}/transitions", response_model=IncidentDetail,
             responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut},
                        409: {"model": ErrorOut, "description": "someone else changed it "
                              "first (code version_conflict) or the state does not allow "
                              "the action (code invalid_transition)"},
                        503: {"model": ErrorOut}},
             summary="Act on an incident: register, cancel, dispatch, accept, handle, "
             "close, reopen, comment, return, park, resume, supervise, verify")
def transition(incident_id: int, body: TransitionIn, request: Request, ctx: Ctx,
               p: Writer) -> IncidentDetail:
    from hub.api import auth

    inc = _load(request, ctx, p, incident_id)
    auth.check_action(p, body.action, inc.grid_code, inc.assignee)
    refusal = case_roles(body.action, p, inc)
    if refusal:
        raise HTTPException(status.HTTP_403_FORBIDDEN, refusal)
    if ctx.alerts is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "this API process runs no alert service")
    reason = body.reason or body.note
    data: dict[str, Any] = {}
    if body.note:
        data["note"] = body.note
    actor = p.person_id or p.user_id
    src = request.client.host if request.client else "api"
    try:
        ctx.alerts.transition(incident_id, Action(body.action), actor,
                              expected_version=body.expected_version, reason=reason,
                              assignee=body.assignee, data=data, source=src,
                              review_at=body.review_at)
    except ConflictError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e),
                            headers={"X-Error-Code": "version_conflict"}) from None
    except LifecycleError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e),
                            headers={"X-Error-Code": "invalid_transition"}) from None
    except store.NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no incident {incident_id}") from None
    except store.StaleVersion as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e),
                            headers={"X-Error-Code": "version_conflict"}) from None
    return get_incident(incident_id, request, ctx, p)


def case_roles(action: str, p: Principal, inc: Incident) -> str | None:
    """The case flow's own role rules (hub.alerts.lifecycle.role_refusal)."""
    if action not in ("return", "park", "resume", "supervise", "verify"):
        return None
    return role_refusal(action, role=p.role, actor=p.person_id or p.user_id,
                        scope_code=p.scope_code, incident=inc)


@router.get("/{incident_id}/evidence", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}, 403: {"model": ErrorOut},
                       404: {"model": ErrorOut}},
            summary="The evidence snapshot (JPEG) of an incident")
def evidence(incident_id: int, request: Request, ctx: Ctx, p: Reader) -> FileResponse:
    inc = _load(request, ctx, p, incident_id)
    if not inc.evidence_image:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this incident has no evidence image")
    # The path comes from a detector, but never serve anything outside the data dir.
    path = stored_file(storage_of(ctx.data_dir), inc.evidence_image)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "evidence image is missing")
    return FileResponse(path, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})
