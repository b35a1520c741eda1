"""Each camera's credentials on its pushes: HTTP Digest (RFC 7616, MD5 or SHA-256,
``qop=auth``) or, where the site file allows it, Basic.

Hikvision's HTTP host (alarm server) authenticates its pushes with digest (or
basic, or not at all, by firmware); Dahua's pushes with basic. Each camera has its
own password, from the environment (``HUB_CAMERA_SECRET_<DEVICE ID>``, the id
upper-cased with every other character an underscore), never from the site file. A
camera without one cannot push. Every comparison is constant-time
(:func:`hmac.compare_digest`).

Nonces are stateless: the time they were made and an HMAC of it under the camera's
password, so any API replica checks a nonce another one issued and a restart forgets
nothing. A nonce is good for ``NONCE_TTL_S``; an older one is answered with a new
challenge marked ``stale``, which digest clients answer without asking anyone. A
nonce's counter (``nc``) is not tracked, so within its lifetime a captured request
could be replayed: that repeats a push, which the episode dedup turns into nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

REALM = "smart-community hub"
NONCE_TTL_S = 300
ENV_PREFIX = "HUB_CAMERA_SECRET_"
_HASHES = {"md5": hashlib.md5, "sha-256": hashlib.sha256}
_HEADER_MAX = 4096


def secret_variable(device_id: str) -> str:
    """The environment variable holding a camera's push password."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", device_id).upper()


def camera_secret(device_id: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(secret_variable(device_id), "")
    return value or None


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reason`` (when refused) is a counter label: ``no_credentials``,
    ``wrong_scheme``, ``malformed``, ``bad_credentials``, ``stale_nonce``;
    ``challenge`` the ``WWW-Authenticate`` values to answer a refusal with."""

    ok: bool
    reason: str = ""
    detail: str = ""
    challenge: list[str] = field(default_factory=list)


def make_nonce(secret: str, device_id: str, now: float) -> str:
    stamp = f"{int(now):x}"
    return f"{stamp}.{_sign(secret, device_id, stamp)}"


def challenges(scheme: str, secret: str, device_id: str, now: float,
               stale: bool = False) -> list[str]:
    if scheme == "basic":
        return [f'Basic realm="{REALM}", charset="UTF-8"']
    nonce = make_nonce(secret, device_id, now)
    stale_part = ", stale=true" if stale else ""
    # MD5 first: cameras' HTTP clients often know only it, and some read only the
    # first challenge; a client that prefers SHA-256 finds it second.
    return [f'Digest realm="{REALM}", qop="auth", algorithm={alg}, nonce="{nonce}"{stale_part}'
            for alg in ("MD5", "SHA-256")]


def verify(authorization: str | None, *, scheme: str, username: str, secret: str,
           device_id: str, method: str, target: str, now: float) -> Verdict:
    """Check an ``Authorization`` header. ``scheme``: the camera's (``digest`` or
    ``basic``); ``target``: the request's path and query as sent (the digest's
    ``uri``); ``now``: the hub's time in seconds."""
    def refuse(reason: str, detail: str, stale: bool = False) -> Verdict:
        return Verdict(False, reason, detail, challenges(scheme, secret, device_id, now, stale))

    if not authorization:
        return refuse("no_credentials", "this camera's pushes must authenticate")
    if len(authorization) > _HEADER_MAX:
        return refuse("malformed", "the Authorization header is too long")
    given, _, rest = authorization.strip().partition(" ")
    if given.lower() != scheme:
        return refuse("wrong_scheme", f"this camera authenticates with {scheme}, not"
                      f" {given[:20].lower() or 'nothing'}")
    if scheme == "basic":
        return _basic(rest.strip(), username, secret, refuse)
    return _digest(rest, username=username, secret=secret, device_id=device_id,
                   method=method, target=target, now=now, refuse=refuse)


def _basic(token: str, username: str, secret: str,
           refuse: Callable[..., Verdict]) -> Verdict:
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return refuse("malformed", "the Basic credentials are not base64 of user:password")
    # Both compared, so the time does not say which one was wrong.
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_pass = hmac.compare_digest(password.encode(), secret.encode())
    if not (sep and ok_user and ok_pass):
        return refuse("bad_credentials", "wrong user name or password")
    return Verdict(True)


def _digest(params_text: str, *, username: str, secret: str, device_id: str, method: str,
            target: str, now: float, refuse: Callable[..., Verdict]) -> Verdict:
    try:
        p = urllib.request.parse_keqv_list(urllib.request.parse_http_list(params_text))
    except ValueError:
        return refuse("malformed", "the Digest parameters cannot be read")
    need = ("username", "realm", "nonce", "uri", "response")
    missing = [k for k in need if not p.get(k)]
    if missing:
        return refuse("malformed", f"the Digest credentials lack {', '.join(missing)}")
    algorithm = (p.get("algorithm") or "MD5").lower()
    h = _HASHES.get(algorithm)
    if h is None:
        return refuse("malformed", f"digest algorithm {algorithm[:20]!r} is not MD5 or SHA-256")
    qop = p.get("qop")
    if qop not in (None, "auth"):
        return refuse("malformed", f"qop {qop[:20]!r} is not auth")
    if qop and not (p.get("nc") and p.get("cnonce")):
        return refuse("malformed", "qop=auth needs nc and cnonce")
    if p["realm"] != REALM:
        return refuse("bad_credentials", "the credentials are for another realm")
    if p["uri"] != target:
        return refuse("bad_credentials", "the credentials are for another URI")
    stamp, _, sig = p["nonce"].partition(".")
    if not hmac.compare_digest(sig.encode(), _sign(secret, device_id, stamp).encode()):
        return refuse("bad_credentials", "the nonce was not issued here (or the password"
                      " is wrong)")
    try:
        age = now - int(stamp, 16)
    except ValueError:
        return refuse("bad_credentials", "the nonce was not issued here")
    if not -5 <= age <= NONCE_TTL_S:
        return refuse("stale_nonce", "the nonce has expired", stale=True)

    def hx(text: str) -> str:
        return h(text.encode("utf-8")).hexdigest()

    ha1 = hx(f"{p['username']}:{REALM}:{secret}")
    ha2 = hx(f"{method}:{p['uri']}")
    if qop:
        expected = hx(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{qop}:{ha2}")
    else:
        expected = hx(f"{ha1}:{p['nonce']}:{ha2}")
    ok_user = hmac.compare_digest(p["username"].encode(), username.encode())
    ok_resp = hmac.compare_digest(p["response"].lower().encode(), expected.encode())
    if not (ok_user and ok_resp):
        return refuse("bad_credentials", "wrong user name or password")
    return Verdict(True)


def _sign(secret: str, device_id: str, stamp: str) -> str:
    msg = f"{device_id}:{stamp}".encode()
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()[:32]
