"""One-time answer links: ``<claims>.<mac>``, where the claims (incident, contact,
expiry, a random nonce) are signed with HMAC-SHA256 under the server's secret. The
signature and expiry are checked before the database is asked; the database keeps
only the token's SHA-256 and marks it used, so a link answers once and a leaked
table gives no working link. Pure: the secret, the time and the nonce come in."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_TOKEN_CHARS = 200


class BadLink(ValueError):
    """Why a token is refused: ``malformed``, ``bad_signature`` or ``expired``."""


@dataclass(frozen=True, slots=True)
class Claims:
    incident_id: int
    contact: int
    expires: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make(secret: str, incident_id: int, contact: int, expires: datetime, nonce: bytes) -> str:
    claims = _b64(f"{incident_id}.{contact}.{int(expires.timestamp())}.".encode() + nonce)
    mac = hmac.new(secret.encode(), claims.encode(), hashlib.sha256).digest()
    return f"{claims}.{_b64(mac)}"


def verify(secret: str, token: str, now: datetime) -> Claims:
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise BadLink("malformed")
    claims, mac = token.split(".")
    want = hmac.new(secret.encode(), claims.encode(), hashlib.sha256).digest()
    try:
        ok = hmac.compare_digest(want, _unb64(mac))
        parts = _unb64(claims).split(b".", 3)
        incident, contact, exp = int(parts[0]), int(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise BadLink("malformed") from None
    if not ok:
        raise BadLink("bad_signature")
    expires = datetime.fromtimestamp(exp, UTC)
    if now >= expires:
        raise BadLink("expired")
    return Claims(incident, contact, expires)


def digest(token: str) -> bytes:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).digest()
