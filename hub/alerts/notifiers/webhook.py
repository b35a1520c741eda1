"""Webhooks signed with HMAC-SHA256.

The receiver checks ``X-Hub-Signature-256: sha256=<hex>``, computed with the shared
secret over the raw request body. The body also carries ``sent_at`` (repeated in
``X-Hub-Timestamp``) and the outbox ``delivery`` id, so a receiver can refuse stale
replays and drop the duplicates that at-least-once delivery allows.
Retries with exponential backoff are the outbox's job (``hub.store.outbox``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

SIGNATURE_HEADER = "X-Hub-Signature-256"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
DELIVERY_HEADER = "X-Hub-Delivery"


class DeliveryError(RuntimeError):
    """The endpoint could not be reached or did not answer 2xx; worth retrying."""


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def build_body(payload: dict[str, Any], delivery: int, sent_at: datetime) -> bytes:
    doc = {"delivery": delivery, "sent_at": sent_at.isoformat(), **payload}
    return json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":")).encode()


def post(url: str, body: bytes, secret: str, delivery: int, sent_at: datetime,
         timeout: float = 5.0) -> int:
    """POST one signed body; returns the HTTP status or raises DeliveryError."""
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "smart-community-hub",
        SIGNATURE_HEADER: sign(secret, body),
        TIMESTAMP_HEADER: sent_at.isoformat(),
        DELIVERY_HEADER: str(delivery),
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - configured URL
            return int(resp.status)
    except urllib.error.HTTPError as e:
        raise DeliveryError(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DeliveryError(f"{url} unreachable: {getattr(e, 'reason', e)}") from None
