"""Incident persistence: the I/O around the pure incident engine.

Applying an alarm is one transaction: record the alarm (its digest is unique, so a
redelivered alarm is recognised and ignored), lock the open incident for its dedup
key (``SELECT ... FOR UPDATE``), ask the engine what to do, and write the incident,
its audit rows and its outbox rows together. The partial unique index on
``dedup_key`` for open incidents makes the database itself refuse a second open
incident, so two alert workers racing on one key cannot both open one: the loser
retries and finds the winner's incident.

Alarms are applied in small batches, one transaction per batch, because the commit
is what costs; a batch that fails is retried alarm by alarm so one bad alarm cannot
hold the others back.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from hub.alerts.model import (
    AuditEntry,
    Decision,
    DecisionKind,
    EscalationDecision,
    Incident,
    Notification,
    Transition,
)
from hub.domain import Alarm, IncidentState, Severity
from hub.protocol import alarm_key
from hub.store.outbox import OutboxRow, enqueue

log = logging.getLogger(__name__)

OPEN_STATES = tuple(s.value for s in IncidentState if s.is_open)
_CLOSED_SQL = "state NOT IN ('cancelled', 'closed')"

# Incident fields stored in a column of the same name; anything else goes to ``extra``.
_COLUMNS = (
    "dedup_key", "rule", "category", "severity", "state", "title", "grid_code", "device_id",
    "subject_id", "zone", "firing", "alarm_count", "last_alarm_ts", "cleared_at", "evidence",
    "evidence_image", "escalation_level", "escalations", "deadline_at", "deadline_kind",
    "assignee", "group_id", "opened_at", "updated_at", "reported_at", "dispatched_at",
    "accepted_at", "handled_at", "closed_at", "review_at", "version",
)
# Fields a newer engine may add before the schema has a column for them.
_EXTRA = tuple(f.name for f in fields(Incident) if f.name not in _COLUMNS and f.name != "id")
_SELECT = "SELECT id, " + ", ".join(_COLUMNS) + ", extra FROM incidents"


CHANGES_CHANNEL = "hub_incidents"


class NotFound(LookupError):
    pass


class StaleVersion(RuntimeError):
    """The row changed under us (optimistic concurrency)."""


# ---------------------------------------------------------------- mapping


def incident_from_row(r: dict[str, Any]) -> Incident:
    kw = {k: r[k] for k in _COLUMNS}
    kw["id"] = r["id"]
    kw["category"] = r["category"]  # text: a plug-in's code as well as a built-in
    kw["severity"] = Severity(r["severity"])
    kw["state"] = IncidentState(r["state"])
    known = {f.name for f in fields(Incident)}
    for k, v in (r.get("extra") or {}).items():
        if k in known and k not in kw:
            kw[k] = v
    return Incident(**kw)


def _params(inc: Incident) -> dict[str, Any]:
    p: dict[str, Any] = {k: getattr(inc, k) for k in _COLUMNS}
    p["category"] = str(inc.category)
    p["severity"] = int(inc.severity)
    p["state"] = inc.state.value
    p["evidence"] = Jsonb(inc.evidence or {})
    extra = {name: getattr(inc, name) for name in _EXTRA}
    p["extra"] = Jsonb(extra)
    p["id"] = inc.id
    return p


_INSERT = (
    "INSERT INTO incidents (" + ", ".join(_COLUMNS) + ", extra) VALUES ("
    + ", ".join(f"%({c})s" for c in _COLUMNS) + ", %(extra)s) RETURNING id"
)
_INSERT_WITH_ID = (
    "INSERT INTO incidents (id, " + ", ".join(_COLUMNS) + ", extra) VALUES (%(id)s, "
    + ", ".join(f"%({c})s" for c in _COLUMNS) + ", %(extra)s)"
)
_UPDATE_FROM = (
    "UPDATE incidents SET " + ", ".join(f"{c} = %({c})s" for c in _COLUMNS if c != "dedup_key")
    + ", extra = %(extra)s WHERE id = %(id)s AND version = %(read_version)s"
)
_UPDATE = (
    "UPDATE incidents SET " + ", ".join(f"{c} = %({c})s" for c in _COLUMNS if c != "dedup_key")
    + ", extra = %(extra)s WHERE id = %(id)s AND version = %(version)s - 1"
)


def alarm_id(alarm: Alarm) -> str:
    """What makes two deliveries the same alarm (``hub.protocol.alarm_key``: the id an
    alarm travels under on the durable inlet)."""
    return alarm_key(alarm.rule, alarm.dedup_key, alarm.state.value, int(alarm.severity),
                     alarm.ts)


# ---------------------------------------------------------------- results


@dataclass(slots=True)
class Applied:
    """What became of one alarm."""

    alarm: Alarm
    alarm_id: str
    duplicate: bool = False
    decision: Decision | None = None
    incident: Incident | None = None  # as written, with its id
    notifications: list[Notification] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    error: str | None = None  # set when the alarm could not be applied


@dataclass(slots=True)
class Changed:
    """An incident changed by a transition or an escalation (already committed)."""

    incident: Incident
    notifications: list[Notification]
    audit: list[AuditEntry]


Decide = Callable[[Alarm, Incident | None, list[Incident], datetime], Decision]
ToOutbox = Callable[[Notification, Incident], list[OutboxRow]]


def _write_audit(conn: psycopg.Connection[Any], entries: Sequence[AuditEntry]) -> None:
    if not entries:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO audit (incident_id, at, actor, action, from_state, to_state, reason,"
            " data, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(a.incident_id, a.at, a.actor, a.action.value,
              a.from_state.value if a.from_state else None, a.to_state.value, a.reason,
              Jsonb(a.data or {}), a.source) for a in entries],
        )


def _fill(items: Sequence[Any], incident_id: int) -> list[Any]:
    return [x.for_incident(incident_id) if x.incident_id is None else x for x in items]


class IncidentStore:
    """Transactions over incidents. ``decide`` is the engine's
    ``decide(alarm, open_incident, related_open, now)`` and ``related_filter`` its
    ``related_filter(alarm)`` (which open incidents to load as ``related_open``);
    ``to_outbox`` turns one notification into outbox rows (channels, webhook URLs)."""

    def __init__(self, pool: ConnectionPool, decide: Decide, to_outbox: ToOutbox,
                 related_filter: Callable[[Alarm], Any]) -> None:
        self.pool = pool
        self.decide = decide
        self.to_outbox = to_outbox
        # Rows telling an external system each step of its incidents (hub.intake).
        self.status_rows: Callable[[Incident, AuditEntry], list[OutboxRow]] | None = None
        self.related_filter = related_filter
        # Names this store in change notices, so a process can skip its own.
        self.origin = uuid.uuid4().hex[:12]

    def _notice(self, conn: psycopg.Connection[Any],
                changes: Sequence[tuple[int, str, str | None]]) -> None:
        """Tell other hub processes (API replicas' live streams) what changed. NOTIFY
        is transactional: the notice goes out with the commit, or not at all."""
        for i in range(0, len(changes), 150):  # payloads must stay under 8000 bytes
            payload = json.dumps({"o": self.origin, "c": changes[i:i + 150]},
                                 separators=(",", ":"))
            conn.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, payload))

    # ------------------------------------------------------------ alarms

    def apply(self, alarms: Sequence[Alarm], now: datetime) -> list[Applied]:
        """Apply alarms in one transaction; on failure, one transaction each, so one
        bad alarm cannot hold the others back (its ``Applied.error`` says why).
        Raises only when the database cannot be reached: then nothing was applied
        and the caller keeps the alarms to try again."""
        if not alarms:
            return []
        # A fixed lock order keeps two workers with overlapping batches from deadlocking.
        order = sorted(range(len(alarms)), key=lambda i: alarms[i].dedup_key)
        batch = [alarms[i] for i in order]
        try:
            with self.pool.connection() as conn, conn.transaction():
                done = self._apply_in(conn, batch, now)
        except (psycopg.OperationalError, PoolTimeout):
            raise
        except Exception as e:  # noqa: BLE001 - narrowed down alarm by alarm below
            if len(batch) > 1:
                log.info("alarm batch failed; applying one by one",
                         extra={"alarms": len(batch), "error": str(e)})
            done = [self._apply_one(a, now) for a in batch]
        out: list[Applied | None] = [None] * len(alarms)
        for i, res in zip(order, done, strict=True):
            out[i] = res
        return out  # type: ignore[return-value]

    def _apply_one(self, alarm: Alarm, now: datetime) -> Applied:
        err: Exception | None = None
        for _ in range(5):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    return self._apply_in(conn, [alarm], now)[0]
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected,
                    psycopg.errors.SerializationFailure, StaleVersion) as e:
                # Another worker opened or changed the incident first: try again and
                # find its row.
                err = e
            except (psycopg.OperationalError, PoolTimeout):
                raise
            except Exception as e:  # noqa: BLE001 - a bad alarm or an engine bug
                err = e
                break
        log.error("alarm could not be applied; dropped", exc_info=err, extra={
            "rule": alarm.rule, "dedup_key": alarm.dedup_key, "device": alarm.device_id})
        return Applied(alarm, alarm_id(alarm), error=f"{type(err).__name__}: {err}")

    def _apply_in(self, conn: psycopg.Connection[Any], alarms: Sequence[Alarm],
                  now: datetime) -> list[Applied]:
        """The batch in a handful of round trips: the engine runs in memory between
        one read of everything the batch needs and one write of everything it did."""
        ids = [alarm_id(a) for a in alarms]
        current: dict[str, Incident] = {}  # open incident per dedup key, as of now
        known: dict[int, Incident] = {}  # every open incident read or written
        # One round trip: record every alarm (the primary key says which ones we have
        # seen before) and lock the open incidents of the batch's keys.
        with conn.pipeline() as pipe, conn.cursor() as c1, \
                conn.cursor(row_factory=dict_row) as c2:
            c1.execute(
                "INSERT INTO incident_alarms (alarm_id, dedup_key, rule, state, severity, ts,"
                " outcome, evidence, evidence_image, received_at)"
                " SELECT *, %s::timestamptz FROM unnest(%s::text[], %s::text[], %s::text[],"
                " %s::text[], %s::smallint[], %s::timestamptz[], %s::text[], %s::jsonb[],"
                " %s::text[]) ON CONFLICT (alarm_id) DO NOTHING RETURNING alarm_id",
                (now, ids, [a.dedup_key for a in alarms], [a.rule for a in alarms],
                 [a.state.value for a in alarms], [int(a.severity) for a in alarms],
                 [a.ts for a in alarms], ["pending"] * len(alarms),
                 [Jsonb(a.evidence or {}) for a in alarms],
                 [a.evidence_image for a in alarms]),
            )
            c2.execute(
                _SELECT + f" WHERE dedup_key = ANY(%s) AND {_CLOSED_SQL}"
                " ORDER BY dedup_key FOR UPDATE",
                (sorted({a.dedup_key for a in alarms}),),
            )
            pipe.sync()
            fresh = {r[0] for r in c1.fetchall()}
            for r in c2.fetchall():
                inc = incident_from_row(r)
                current[inc.dedup_key] = inc
                known[inc.id] = inc  # type: ignore[index]
        todo = [a for a, i in zip(alarms, ids, strict=True) if i in fresh]
        if todo:
            for inc in self._related_batch(conn, todo):
                known.setdefault(inc.id, inc)  # type: ignore[arg-type]
        new_ids: list[int] = []
        inserts: dict[int, Incident] = {}
        updates: dict[int, tuple[Incident, int]] = {}  # id -> (latest, version read)
        audit: list[AuditEntry] = []
        rows: list[OutboxRow] = []
        results: list[Applied] = []
        outcomes: list[tuple[str, int | None, str]] = []
        left = len(todo)
        for alarm, aid in zip(alarms, ids, strict=True):
            res = Applied(alarm, aid)
            results.append(res)
            if aid not in fresh:
                res.duplicate = True
                continue
            left -= 1
            open_inc = current.get(alarm.dedup_key)
            d = self.decide(alarm, open_inc, self._related(alarm, open_inc, known), now)
            res.decision = d
            inc = d.incident
            if d.kind in (DecisionKind.CREATE, DecisionKind.GROUP) and inc is not None:
                if not new_ids:
                    new_ids = self._allocate(conn, left + 1)
                inc = inc.copy(id=new_ids.pop())
                inserts[inc.id] = inc  # type: ignore[index]
            elif d.kind is DecisionKind.UPDATE and inc is not None and inc.id is not None:
                if inc.id in inserts:
                    inserts[inc.id] = inc  # created earlier in this batch: insert the latest
                else:
                    updates[inc.id] = (inc, updates.get(inc.id, (inc, inc.version - 1))[1])
            if inc is not None and inc.id is not None:
                res.incident = inc
                known[inc.id] = inc
                if inc.is_open:
                    current[inc.dedup_key] = inc
                else:
                    current.pop(inc.dedup_key, None)
                    known.pop(inc.id, None)
                res.audit = _fill(d.audit, inc.id)
                res.notifications = _fill(d.notifications, inc.id)
                audit.extend(res.audit)
                for n in res.notifications:
                    rows.extend(self.to_outbox(n, inc))
            outcomes.append((aid, inc.id if inc is not None else d.related_id, d.kind.value))
        # One round trip for everything the batch wrote.
        with conn.cursor() as cur, conn.cursor() as upd:
            with conn.pipeline():
                if inserts:
                    cur.executemany(_INSERT_WITH_ID, [_params(i) for i in inserts.values()])
                if updates:
                    params = []
                    for inc, read in updates.values():
                        p = _params(inc)
                        p["id"], p["read_version"] = inc.id, read
                        params.append(p)
                    upd.executemany(_UPDATE_FROM + " RETURNING id", params, returning=True)
                _write_audit(conn, audit)
                enqueue(conn, rows, now)
                changed = [(r.incident.id, "new" if r.decision and r.decision.kind in (
                    DecisionKind.CREATE, DecisionKind.GROUP) else "update", None)
                    for r in results if r.incident is not None and r.incident.id is not None]
                if changed:
                    self._notice(conn, changed)  # type: ignore[arg-type]
                if outcomes:
                    cur.execute(
                        "UPDATE incident_alarms a SET incident_id = o.iid, outcome = o.kind"
                        " FROM unnest(%s::text[], %s::bigint[], %s::text[])"
                        " AS o(aid, iid, kind) WHERE a.alarm_id = o.aid",
                        ([o[0] for o in outcomes], [o[1] for o in outcomes],
                         [o[2] for o in outcomes]),
                    )
            if updates:
                # The lock is held, so every version check must pass; count to be sure.
                written = 0
                while True:
                    written += len(upd.fetchall())
                    if not upd.nextset():
                        break
                if written != len(updates):
                    raise StaleVersion("an incident changed while the batch held its lock")
        return results

    @staticmethod
    def _allocate(conn: psycopg.Connection[Any], n: int) -> list[int]:
        rows = conn.execute(
            "SELECT nextval('incidents_id_seq') FROM generate_series(1, %s)", (n,)
        ).fetchall()
        return sorted((int(r[0]) for r in rows), reverse=True)  # pop() gives the smallest

    def _related_batch(self, conn: psycopg.Connection[Any],
                       alarms: Sequence[Alarm]) -> list[Incident]:
        """Open incidents the engine may group these alarms with or be inhibited by:
        about the same care subject (any age: an open SOS keeps inhibiting), or the
        same device recently (the engine's ``related_filter`` says how recently)."""
        subjects: set[str] = set()
        devices: set[str] = set()
        since: datetime | None = None
        for a in alarms:
            f = self.related_filter(a)
            if f.subject_id:
                subjects.add(f.subject_id)
            if f.device_id:
                devices.add(f.device_id)
                since = f.since if since is None else min(since, f.since)
        if not subjects and not devices:
            return []
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                _SELECT + f" WHERE {_CLOSED_SQL} AND (subject_id = ANY(%s)"
                " OR (device_id = ANY(%s) AND last_alarm_ts >= %s))"
                " ORDER BY id DESC LIMIT 2000",
                (sorted(subjects), sorted(devices), since),
            ).fetchall()
        return [incident_from_row(r) for r in rows]

    def _related(self, alarm: Alarm, open_inc: Incident | None,
                 known: dict[int, Incident]) -> list[Incident]:
        f = self.related_filter(alarm)
        if not f.subject_id and not f.device_id:
            return []
        skip = open_inc.id if open_inc is not None else None
        out = []
        for inc in known.values():
            if inc.id == skip or not inc.is_open:
                continue
            if (f.subject_id and inc.subject_id == f.subject_id) or (
                f.device_id and inc.device_id == f.device_id
                and (inc.last_alarm_ts or inc.opened_at) >= f.since
            ):
                out.append(inc)
        return out[:50]

    @staticmethod
    def _update(conn: psycopg.Connection[Any], inc: Incident) -> None:
        p = _params(inc)
        p["id"] = inc.id
        cur = conn.execute(_UPDATE, p)
        if cur.rowcount != 1:
            raise StaleVersion(f"incident {inc.id} is no longer at version {inc.version - 1}")

    def _enqueue(self, conn: psycopg.Connection[Any], notes: Sequence[Notification],
                 inc: Incident, now: datetime,
                 audit: Sequence[AuditEntry] = ()) -> None:
        rows: list[OutboxRow] = []
        for n in notes:
            rows.extend(self.to_outbox(n, inc))
        if self.status_rows is not None:
            for a in audit:
                rows.extend(self.status_rows(inc, a))
        enqueue(conn, rows, now)

    def _write_step(self, conn: psycopg.Connection[Any],
                    step: Transition | EscalationDecision, incident_id: int,
                    now: datetime) -> Changed:
        """One lifecycle step on a locked row: the row, its audit entry and its
        outbox rows, in the caller's transaction."""
        self._update(conn, step.incident)
        audit = _fill([step.audit], incident_id)
        notes = _fill(step.notifications, incident_id)
        _write_audit(conn, audit)
        self._enqueue(conn, notes, step.incident, now, audit)
        return Changed(step.incident, notes, audit)

    # ------------------------------------------------------------ actions

    def change(self, incident_id: int, expected_version: int | None,
               act: Callable[[Incident], Transition], now: datetime) -> Changed:
        """Run a lifecycle action on the locked row and write its result. The action
        raises the lifecycle's own errors (invalid transition, version conflict)."""
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(row_factory=dict_row) as cur:
                r = cur.execute(_SELECT + " WHERE id = %s FOR UPDATE", (incident_id,)).fetchone()
            if r is None:
                raise NotFound(f"no incident {incident_id}")
            inc = incident_from_row(r)
            t = act(inc)
            done = self._write_step(conn, t, incident_id, now)
            self._notice(conn, [(incident_id, "transition", t.audit.action.value)])
        return done

    def escalate_due(self, now: datetime,
                     due: Callable[[Incident, datetime], EscalationDecision | None],
                     limit: int = 100) -> list[Changed]:
        """Fire every time limit that has run out by ``now``. Rows another worker is
        escalating are skipped, not waited for. Timers live in the table, so a
        restarted hub picks up exactly where the last one stopped."""
        out: list[Changed] = []
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    _SELECT + f" WHERE deadline_at <= %s AND deadline_at IS NOT NULL"
                    f" AND {_CLOSED_SQL} ORDER BY deadline_at LIMIT %s FOR UPDATE SKIP LOCKED",
                    (now, limit),
                ).fetchall()
            for r in rows:
                inc = incident_from_row(r)
                e = due(inc, now)
                if e is None:
                    continue
                out.append(self._write_step(conn, e, inc.id or 0, now))
            if out:
                self._notice(conn, [(c.incident.id, "escalated", None) for c in out])  # type: ignore[misc]
        return out

    def review_due(self, now: datetime,
                   due: Callable[[Incident, datetime], Transition | None],
                   limit: int = 100) -> list[Changed]:
        """Hand back every parked incident whose review date has come by ``now`` (挂账
        到期). Like escalations, the date lives in the row, so a hub that was down
        catches up."""
        out: list[Changed] = []
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(
                    _SELECT + " WHERE state = 'parked' AND review_at <= %s"
                    " ORDER BY review_at LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit),
                ).fetchall()
            for r in rows:
                inc = incident_from_row(r)
                t = due(inc, now)
                if t is None:
                    continue
                out.append(self._write_step(conn, t, inc.id or 0, now))
            if out:
                self._notice(conn, [(c.incident.id, "transition", "review") for c in out])  # type: ignore[misc]
        return out


# ---------------------------------------------------------------- queries


def get(conn: psycopg.Connection[Any], incident_id: int) -> Incident | None:
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(_SELECT + " WHERE id = %s", (incident_id,)).fetchone()
    return incident_from_row(r) if r else None


def get_many(conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[Incident]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_SELECT + " WHERE id = ANY(%s)", (list(ids),)).fetchall()
    return [incident_from_row(r) for r in rows]


def open_for_key(conn: psycopg.Connection[Any], dedup_key: str) -> Incident | None:
    with conn.cursor(row_factory=dict_row) as cur:
        r = cur.execute(_SELECT + f" WHERE dedup_key = %s AND {_CLOSED_SQL}",
                        (dedup_key,)).fetchone()
    return incident_from_row(r) if r else None


@dataclass(frozen=True, slots=True)
class Filters:
    scope: str = ""  # grid subtree prefix
    category: Sequence[str] = ()
    state: Sequence[str] = ()  # states; "open" stands for every open state
    min_severity: int | None = None
    since: datetime | None = None  # on opened_at
    until: datetime | None = None
    assignee: str | None = None
    subject_id: str | None = None
    device_id: str | None = None


# The orders a list can come in, as the columns it is sorted on (all descending, the
# id last so the order is total). A cursor carries the last row's values of these.
SORTS: dict[str, tuple[str, ...]] = {
    "newest": ("opened_at", "id"),
    "severity": ("severity", "opened_at", "id"),  # most severe first, then newest
}


def encode_cursor(inc: Incident, sort: str = "newest") -> str:
    vals = (getattr(inc, c) for c in SORTS[sort])
    raw = "|".join(v.isoformat() if isinstance(v, datetime) else str(int(v)) for v in vals)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "newest") -> tuple[Any, ...]:
    """The sort columns' values ``cursor`` carries. Raises ValueError on anything that
    is not a cursor this module made for ``sort``."""
    cols = SORTS[sort]
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split("|")
        if len(parts) != len(cols):
            raise ValueError("wrong number of values")
        out: list[Any] = []
        for col, text in zip(cols, parts, strict=True):
            if col == "opened_at":
                at = datetime.fromisoformat(text)
                if at.tzinfo is None:
                    raise ValueError("naive")
                out.append(at)
            else:
                out.append(int(text))
        return tuple(out)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"invalid cursor {cursor!r}") from e


def list_incidents(conn: psycopg.Connection[Any], f: Filters, limit: int = 50,
                   after: str | None = None,
                   sort: str = "newest") -> tuple[list[Incident], str | None]:
    """In the order ``sort`` names (see ``SORTS``; newest first by the first alarm's
    time by default), keyset-paged: pass the returned cursor as ``after`` for the next
    page (with the same ``sort``); None when there is no more."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; one of {', '.join(SORTS)}")
    where: list[sql.Composable] = []
    args: list[Any] = []
    if f.scope:
        where.append(sql.SQL("starts_with(grid_code, %s)"))
        args.append(f.scope)
    if f.category:
        where.append(sql.SQL("category = ANY(%s)"))
        args.append(list(f.category))
    states = set(f.state)
    if "open" in states:
        states.discard("open")
        states.update(OPEN_STATES)
    if states:
        where.append(sql.SQL("state = ANY(%s)"))
        args.append(sorted(states))
    if f.min_severity is not None:
        where.append(sql.SQL("severity >= %s"))
        args.append(f.min_severity)
    if f.since is not None:
        where.append(sql.SQL("opened_at >= %s"))
        args.append(f.since)
    if f.until is not None:
        where.append(sql.SQL("opened_at < %s"))
        args.append(f.until)
    for col, val in (("assignee", f.assignee), ("subject_id", f.subject_id),
                     ("device_id", f.device_id)):
        if val is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(col)))
            args.append(val)
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in SORTS[sort])
    if after:
        vals = decode_cursor(after, sort)
        where.append(sql.SQL("({}) < ({})").format(
            keys, sql.SQL(", ").join([sql.Placeholder()] * len(vals))))
        args += vals
    q = sql.SQL(_SELECT)
    if where:
        q = q + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    order = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(c)) for c in SORTS[sort])
    q = q + sql.SQL(" ORDER BY {} LIMIT %s").format(order)
    args.append(limit + 1)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q, args).fetchall()
    items = [incident_from_row(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1], sort) if len(rows) > limit and items else None
    return items, nxt


def timeline(conn: psycopg.Connection[Any], incident_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, at, actor, action, from_state, to_state, reason, data, source"
            " FROM audit WHERE incident_id = %s ORDER BY id", (incident_id,),
        ).fetchall()


def alarms_of(conn: psycopg.Connection[Any], incident_id: int,
              limit: int = 100) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT alarm_id, rule, state, severity, ts, outcome, evidence, evidence_image"
            " FROM incident_alarms WHERE incident_id = %s ORDER BY ts DESC LIMIT %s",
            (incident_id, limit),
        ).fetchall()
    rows.reverse()
    return rows


def purge_alarms(conn: psycopg.Connection[Any], before: datetime) -> int:
    """Forget alarm records older than ``before``. Redelivery happens within minutes,
    so old digests no longer guard anything; the incidents and their audit stay."""
    cur = conn.execute("DELETE FROM incident_alarms WHERE received_at < %s", (before,))
    return cur.rowcount


def open_counts(conn: psycopg.Connection[Any], scope: str = "") -> dict[str, int]:
    """Open incidents per grid code (for the map and the tree)."""
    rows = conn.execute(
        f"SELECT grid_code, count(*) FROM incidents WHERE {_CLOSED_SQL}"
        " AND starts_with(coalesce(grid_code, ''), %s) GROUP BY grid_code", (scope,),
    ).fetchall()
    return {r[0] or "": int(r[1]) for r in rows}
