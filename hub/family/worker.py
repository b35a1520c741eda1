"""The family cascade run against the database: every second it starts the cascade
of each new life-safety incident about a care subject with emergency contacts, and
moves on the cascades whose window ended; ``answer`` takes a contact's answer from
the public page. Each step is one transaction: the cascade's state, the SMS with its
one-time link in the outbox (the site's ``family.channel``, urgent: a life may be at
stake), and a note in the incident's timeline (``family_notified``,
``family_no_answer``, ``family_answer``, ``family_exhausted``)."""

from __future__ import annotations

import logging
import secrets as random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from psycopg_pool import ConnectionPool

from hub.alerts.notifiers import timeline
from hub.alerts.notifiers.channels import SecretMissing, secret
from hub.alerts.notifiers.registry import Message
from hub.clock import Clock
from hub.family import cascade as fc
from hub.family import links
from hub.family import store as fstore
from hub.store.outbox import OutboxRow, enqueue

log = logging.getLogger(__name__)

NOTIFIED = Counter("hub_family_contacts_notified_total", "Emergency contacts told")
ANSWERS = Counter("hub_family_answers_total", "Emergency contacts' answers", ["answer"])
REFUSED = Counter("hub_family_links_refused_total", "Answer links refused", ["reason"])
LOOKBACK = timedelta(days=1)  # older incidents opened before the cascade existed


class FamilyCascades:
    def __init__(self, pool: ConnectionPool, site: Any, clock: Clock, public_url: str = "",
                 on_notify: Callable[[], None] = lambda: None) -> None:
        self.pool = pool
        self.site = site
        self.clock = clock
        self.cfg = site.family
        self.public_url = public_url.rstrip("/")
        self.on_notify = on_notify
        self.subjects = {s.id: s for s in site.care_subjects if s.emergency_contacts}
        self._warned = False

    def _secret(self) -> str:
        return secret(self.cfg.link_secret_env)

    def cascade_off(self, e: SecretMissing) -> None:
        """Log that links can be neither made nor checked, once per process: the
        thread asks every second and the answer page on every request."""
        if not self._warned:
            log.error("family cascade off: %s", e, extra={"channel": self.cfg.channel})
            self._warned = True

    # ------------------------------------------------------------ the thread

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            try:
                self.step()
            except Exception:  # noqa: BLE001 - database away: the state is durable
                log.exception("family cascade step failed")

    def step(self, now: datetime | None = None) -> int:
        """Start new cascades and move on due ones; returns the steps taken."""
        if self.cfg.channel is None or not self.subjects:
            return 0
        try:
            self._secret()
        except SecretMissing as e:
            # Nothing is started, so nothing is half done.
            self.cascade_off(e)
            return 0
        now = now or self.clock.now()
        codes = [c.code for c in self.site.registry if c.life_safety]
        n = 0
        with self.pool.connection() as conn:
            for incident_id, subject_id in fstore.candidates(conn, codes, list(self.subjects),
                                                             now - LOOKBACK):
                s = self.subjects[subject_id]
                c, decisions = fc.start([(x.name, x.phone, x.relation)
                                         for x in s.emergency_contacts], self.cfg.window_s, now)
                with conn.transaction():
                    if fstore.create(conn, incident_id, subject_id, c, now):
                        self._apply(conn, incident_id, c, decisions, now)
                        n += 1
            with conn.transaction():
                for incident_id, c in fstore.lock_due(conn, now):
                    c, decisions = fc.tick(c, now)
                    fstore.save(conn, incident_id, c, now)
                    self._apply(conn, incident_id, c, decisions, now)
                    n += 1
        if n:
            self.on_notify()
        return n

    # ------------------------------------------------------------ answers

    def answer(self, token: str, answer: fc.Answer, now: datetime | None = None) -> int:
        """Record a contact's answer; returns the incident id. Raises
        ``links.BadLink`` (``malformed``, ``bad_signature``, ``expired``, ``used``)."""
        now = now or self.clock.now()
        try:
            claims = links.verify(self._secret(), token, now)
        except links.BadLink as e:
            REFUSED.labels(str(e)).inc()
            raise
        with self.pool.connection() as conn, conn.transaction():
            hit = fstore.use_link(conn, links.digest(token), answer, now)
            if hit is None:
                REFUSED.labels("used").inc()
                raise links.BadLink("used")
            incident_id, contact = hit
            c = fstore.lock(conn, incident_id)
            if c is None or contact != claims.contact:
                raise links.BadLink("malformed")
            c, decisions = fc.answer(c, contact, answer, now)
            fstore.save(conn, incident_id, c, now)
            self._apply(conn, incident_id, c, decisions, now)
        ANSWERS.labels(answer).inc()
        self.on_notify()
        return incident_id

    def page(self, token: str, now: datetime | None = None) -> tuple[str, str, bool]:
        """(subject name, address, still open) for the answer page."""
        now = now or self.clock.now()
        claims = links.verify(self._secret(), token, now)
        with self.pool.connection() as conn:
            state = fstore.link_state(conn, links.digest(token))
            row = conn.execute("SELECT subject_id FROM incidents WHERE id = %s",
                               (claims.incident_id,)).fetchone()
        if state is None or row is None:
            raise links.BadLink("malformed")
        s = self.site.subject(row[0])
        return (s.name if s else "", s.address if s else "", state == "unused")

    # ------------------------------------------------------------ effects

    def _apply(self, conn: Any, incident_id: int, c: fc.Cascade,
               decisions: list[fc.Decision], now: datetime) -> None:
        for d in decisions:
            if isinstance(d, fc.Notify):
                self._notify(conn, incident_id, c, d.contact, now)
            elif isinstance(d, fc.TimedOut):
                step = c.steps[d.contact]
                timeline.note(conn, incident_id, now, "family_no_answer", actor="system:family",
                              data={"contact": d.contact, "name": step.name})
            elif isinstance(d, fc.Answered):
                step = c.steps[d.contact]
                zh, en = fc.LABELS[d.answer]
                timeline.note(conn, incident_id, now, "family_answer",
                              actor=f"family:{d.contact}", reason=f"{zh} / {en}",
                              data={"contact": d.contact, "name": step.name,
                                    "relation": step.relation, "answer": d.answer,
                                    "cancel_candidate": d.cancel_candidate})
                log.info("family answer", extra={"incident": incident_id,
                                                 "contact": d.contact, "answer": d.answer})
            elif isinstance(d, fc.Exhausted):
                timeline.note(conn, incident_id, now, "family_exhausted", actor="system:family",
                              reason="无家属应答，继续按网格升级 / no contact answered;"
                                     " the grid escalation goes on")

    def _notify(self, conn: Any, incident_id: int, c: fc.Cascade, contact: int,
                now: datetime) -> None:
        step = c.steps[contact]
        expires = now + timedelta(seconds=self.cfg.link_ttl_s)
        token = links.make(self._secret(), incident_id, contact, expires, random.token_bytes(12))
        fstore.add_link(conn, links.digest(token), incident_id, contact, expires)
        url = f"{self.public_url}/api/family/{token}"
        row = conn.execute("SELECT title, subject_id FROM incidents WHERE id = %s",
                           (incident_id,)).fetchone()
        s = self.site.subject(row[1]) if row else None
        who = f"{s.name}（{s.address}）" if s else ""
        minutes = max(1, round(c.window_s / 60))
        msg = Message(
            title=f"【紧急】{who}{row[0] if row else ''}",
            lines=(f"请在 {minutes} 分钟内点击回复：我在路上 / 她没事 / 我去不了",
                   f"Urgent: please answer within {minutes} min:"),
            url=url, severity="critical", incident_id=incident_id)
        enqueue(conn, [OutboxRow("sms", f"family:{incident_id}:{contact}",
                                 {"message": msg.to_dict(), "phone": step.phone, "urgent": True},
                                 incident_id=incident_id, target=self.cfg.channel)], now)
        timeline.note(conn, incident_id, now, "family_notified", actor="system:family",
                      data={"contact": contact, "name": step.name, "relation": step.relation,
                            "deadline": step.deadline.isoformat() if step.deadline else None})
        NOTIFIED.inc()
        log.info("family contact notified", extra={"incident": incident_id, "contact": contact,
                                                   "deadline": str(step.deadline)})


def view(c: fc.Cascade | None) -> dict[str, Any] | None:
    """Who was told and who answered, for the API (phone numbers left out)."""
    if c is None:
        return None
    cand = next((s for s in c.steps if s.answer == "false_alarm"), None)
    return {
        "outcome": c.outcome, "current": c.current,
        "deadline": c.deadline.isoformat() if c.deadline else None,
        "cancel_candidate": (f"{cand.name}: {fc.LABELS['false_alarm'][0]}" if cand else None),
        "contacts": [{"name": s.name, "relation": s.relation,
                      "notified_at": s.notified_at.isoformat() if s.notified_at else None,
                      "deadline": s.deadline.isoformat() if s.deadline else None,
                      "answer": s.answer, "timed_out": s.timed_out,
                      "answered_at": s.answered_at.isoformat() if s.answered_at else None}
                     for s in c.steps],
    }
