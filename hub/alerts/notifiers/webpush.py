"""Web Push to the phone view's service worker (RFC 8030), with VAPID (RFC 8292) and
the payload encrypted for the subscription (RFC 8291, aes128gcm): ``pywebpush`` does
the encryption and the signed JWT, ``py_vapid`` holds the key.

Rows: one ``webpush`` outbox row per person told (``WebPushPlan``, pure), kept by
``hub.store.outbox.enqueue`` inside the incident's transaction only for people with a
subscription. Delivery (``WebPushSender``, the dispatcher's ``channels`` duck type:
``handles`` / ``deliver``) reads that person's subscriptions at send time, so a
second phone added meanwhile gets it too and a removed one does not; a 404/410 from
the push service removes the subscription. A critical life-safety notification schedules a
re-notification every ``every_s`` seconds, at most ``times`` times, through the same
outbox; each one is sent only while the incident still waits for acceptance in the
state it was in when told (accepted, cancelled, escalated on: it stops).

Keys: ``HUB_VAPID_PRIVATE_KEY`` (PEM, or the raw key base64url) or, without it,
``<data dir>/vapid/private.pem``, made on first run. Never the site file."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter
from psycopg_pool import ConnectionPool
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from hub.alerts.model import Notification
from hub.alerts.notifiers.webhook import DeliveryError
from hub.store import push
from hub.store.outbox import OutboxItem, OutboxRow

log = logging.getLogger(__name__)

CHANNEL = "webpush"
# States in which an incident still waits for the worker's 签收.
WAITING = ("reported", "registered", "dispatched")
MAX_PAYLOAD = 3000  # push services take 4096 bytes of ciphertext at least

PUSHES = Counter("hub_webpush_total", "Web Push messages by outcome",
                 ["outcome"])  # ok | gone | failed | no_subscription | stopped


class Senders:
    """Several delivery plug-ins behind the dispatcher's one ``channels`` slot."""

    def __init__(self, *senders: Any) -> None:
        self.senders = [s for s in senders if s is not None]

    def handles(self, channel: str) -> bool:
        return any(s.handles(channel) for s in self.senders)

    def deliver(self, items: list[OutboxItem], now: datetime) -> None:
        for s in self.senders:
            if s.handles(items[0].channel):
                s.deliver(items, now)
                return
        raise DeliveryError(f"unknown channel {items[0].channel!r}")


# ------------------------------------------------------------------ keys


@dataclass(frozen=True)
class VapidKeys:
    vapid: Vapid
    public_key: str  # base64url of the uncompressed P-256 point: applicationServerKey
    source: str  # "env" or the file's path


def _public_b64(v: Vapid) -> str:
    import base64

    raw = v.public_key.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_keys(data_dir: Path | str, private_key: str = "") -> VapidKeys:
    """The VAPID key: ``private_key`` (``HUB_VAPID_PRIVATE_KEY``) when given, else the
    data directory's file, made (mode 0600) when missing."""
    text = private_key.strip()
    if text:
        v = Vapid.from_pem(text.encode()) if "BEGIN" in text else Vapid.from_string(text)
        return VapidKeys(v, _public_b64(v), "env")
    path = Path(data_dir) / "vapid" / "private.pem"
    if path.exists():
        v = Vapid.from_file(str(path))
        return VapidKeys(v, _public_b64(v), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    v = Vapid()
    v.generate_keys()
    tmp = path.with_name(f"private.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(v.private_pem())
    try:
        # A link never replaces: of two processes starting at once (the API and the
        # alert worker), the first key stays and both use it.
        os.link(tmp, path)
        log.info("VAPID key generated", extra={"path": str(path)})
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    v = Vapid.from_file(str(path))
    return VapidKeys(v, _public_b64(v), str(path))


# ------------------------------------------------------------------ rows (pure)


@dataclass(frozen=True, slots=True)
class Renotify:
    every_s: float = 300.0
    times: int = 6  # re-notifications after the first push, at most


class WebPushPlan:
    """``life_safety(category)``: whether a category's critical news re-notifies."""

    def __init__(self, life_safety: Any, renotify: Renotify = Renotify()) -> None:
        self.life_safety = life_safety
        self.renotify = renotify

    def rows(self, n: Notification) -> list[OutboxRow]:
        sev = n.severity.name.lower()
        again = (sev == "critical" and self.renotify.times > 0
                 and n.reason in ("new", "transition", "escalated")
                 and bool(self.life_safety(str(n.category))))
        note = {
            "incident_id": n.incident_id, "title": n.title, "category": str(n.category),
            "severity": sev, "state": n.state.value, "reason": n.reason, "level": n.level,
            "grid_code": n.grid_code or "", "ts": n.at.isoformat(),
        }
        out: list[OutboxRow] = []
        for person in sorted({r.person_id for r in n.recipients}):
            payload: dict[str, Any] = {"note": note, "urgent": sev == "critical"}
            if again:
                payload["renotify"] = {"every_s": self.renotify.every_s,
                                       "left": self.renotify.times, "state": n.state.value,
                                       "n": 0}
            out.append(OutboxRow(CHANNEL, person, payload, incident_id=n.incident_id))
        return out


def message(note: Mapping[str, Any], *, again: int = 0,
            others: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What the service worker shows (js/sw.js): zh first, the incident's tag, so a
    re-notification replaces the last one and rings again."""
    iid = note.get("incident_id")
    sev = str(note.get("severity", "info"))
    head = {"critical": "【紧急】", "major": "【重要】"}.get(sev, "")
    what = {"new": "新告警", "transition": "派给我", "escalated": "已升级",
            "update": "更新"}.get(str(note.get("reason")), "提醒")
    title = f"{head}#{iid} {note.get('title', '')}".strip()
    body = f"{what} · 网格 {note.get('grid_code', '')}" + (f" · 第 {again} 次提醒" if again else "")
    if others:
        # Rate-limited: one summary of everything that waited, the worst first.
        notes = [note, *others]
        title = f"{len(notes)} 条告警（限流合并）"
        body = "; ".join(f"#{n.get('incident_id')} {n.get('title', '')}" for n in notes[:5])
        if len(notes) > 5:
            body += f"; +{len(notes) - 5}"
    critical = sev == "critical"
    doc = {"title": title[:200], "body": body[:300], "tag": f"incident-{iid}",
           "incident_id": iid, "url": f"/m?incident={iid}", "severity": sev,
           "reason": note.get("reason"), "again": again,
           "renotify": critical or again > 0, "requireInteraction": critical,
           "vibrate": [400, 150, 400, 150, 400] if critical else [200, 100, 200]}
    return doc


# ------------------------------------------------------------------ delivery (I/O)


class WebPushSender:
    """``subject``: the VAPID ``sub`` claim (a mailto: or https: contact)."""

    def __init__(self, pool: ConnectionPool, keys: VapidKeys, *,
                 subject: str = "mailto:hub@localhost", timeout: float = 5.0,
                 ttl_s: int = 3600) -> None:
        self.pool = pool
        self.keys = keys
        self.subject = subject
        self.timeout = timeout
        self.ttl_s = ttl_s
        self._local = threading.local()

    def handles(self, channel: str) -> bool:
        return channel == CHANNEL

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def deliver(self, items: list[OutboxItem], now: datetime) -> None:
        first = max(items, key=lambda i: (bool(i.payload.get("urgent")), i.id))
        renotify = first.payload.get("renotify") or {}
        again = int(renotify.get("n", 0))
        if again and first.incident_id is not None and not self._still_waiting(first, renotify):
            PUSHES.labels("stopped").inc()
            return
        with self.pool.connection() as conn:
            subs = push.for_person(conn, first.recipient)
        if not subs:
            PUSHES.labels("no_subscription").inc()
            return
        others = [i.payload.get("note", {}) for i in items if i is not first]
        body = json.dumps(message(first.payload.get("note", {}), again=again, others=others),
                          ensure_ascii=False).encode()[:MAX_PAYLOAD].decode(errors="ignore")
        errors = [self._send(s, body, bool(first.payload.get("urgent")), now, first.incident_id)
                  for s in subs]
        failed = [e for e in errors if e is not None]
        if failed and len(failed) == len(subs):
            raise DeliveryError(f"web push to {first.recipient}: {failed[0]}")
        if renotify and int(renotify.get("left", 0)) > 0:
            self._schedule_again(first, renotify, now)
        if failed:
            # Some phones got it, some did not: send again; the tag makes the repeat
            # replace the notification on the phones that have it.
            raise DeliveryError(f"web push to {first.recipient}: {failed[0]}")

    def _send(self, sub: push.Subscription, body: str, urgent: bool, now: datetime,
              incident: int | None) -> str | None:
        """None when the push service took the message, else the error."""
        try:
            resp = webpush(sub.info(), body, vapid_private_key=self.keys.vapid,
                           vapid_claims={"sub": self.subject}, timeout=self.timeout,
                           ttl=self.ttl_s, headers={"Urgency": "high" if urgent else "normal"},
                           requests_session=self._session())
            status = getattr(resp, "status_code", 201)
            err = None
        except WebPushException as e:
            status = getattr(e.response, "status_code", None) if e.response is not None else None
            err = f"HTTP {status}" if status else str(e.message)[:200]
        except (requests.RequestException, OSError, ValueError) as e:
            status, err = None, f"{type(e).__name__}: {e}"[:200]
        with self.pool.connection() as conn:
            if status in (404, 410):
                push.gone(conn, sub.id)
                PUSHES.labels("gone").inc()
                log.info("push subscription gone; removed",
                         extra={"subscription": sub.id, "user": sub.user_id, "status": status,
                                "incident": incident})
                return None  # nothing to retry for this phone
            push.mark(conn, sub.id, now, err)
        PUSHES.labels("failed" if err else "ok").inc()
        if err:
            log.warning("web push not delivered", extra={
                "subscription": sub.id, "user": sub.user_id, "incident": incident, "error": err})
        return err

    def _still_waiting(self, item: OutboxItem, renotify: Mapping[str, Any]) -> bool:
        assert item.incident_id is not None
        with self.pool.connection() as conn:
            st = push.incident_state(conn, item.incident_id)
        return st is not None and st[0] in WAITING and st[0] == renotify.get("state")

    def _schedule_again(self, item: OutboxItem, renotify: Mapping[str, Any],
                        now: datetime) -> None:
        nxt = {**renotify, "left": int(renotify["left"]) - 1, "n": int(renotify.get("n", 0)) + 1}
        payload = {**item.payload, "renotify": nxt}
        with self.pool.connection() as conn:
            push.schedule(conn, item.incident_id, item.recipient, payload, now,
                          now + timedelta(seconds=float(renotify["every_s"])))


def attach(outbox_rows: Any, dispatcher: Any, pool: ConnectionPool, site: Any,
           data_dir: Path, settings: Any) -> WebPushSender:
    """Plug Web Push into an alert service's outbox rows and dispatcher."""

    def life_safety(code: str) -> bool:
        try:
            return bool(site.category(code).life_safety)
        except LookupError:
            return False

    sender = WebPushSender(pool, load_keys(data_dir, settings.vapid_private_key),
                           subject=settings.push_subject)
    outbox_rows.push = WebPushPlan(life_safety, Renotify(settings.push_renotify_s,
                                                         settings.push_renotify_times))
    dispatcher.channels = Senders(getattr(dispatcher, "channels", None), sender)
    return sender
