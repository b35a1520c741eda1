"""A local stand-in for a browser's push service, for the tests and bench/reach.py:
phones' subscriptions with their own P-256 keys and auth secrets, and an HTTP
server that takes the hub's push messages, checks the VAPID JWT (RFC 8292: ES256
by the hub's public key, ``aud`` the endpoint's origin, ``exp`` within 24 h) and
decrypts the payload with the subscription's keys (RFC 8291, aes128gcm, through
``http_ece``). Chromium cannot reach a real push service here; this can.

Tool, not runtime: the hub never imports it."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Phone:
    """One browser's push subscription: the key pair and auth secret it made."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def p256dh(self) -> str:
        return b64u(self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint))

    def subscription(self, base_url: str) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` would give the page."""
        return {"endpoint": f"{base_url}/push/{self.name}", "expirationTime": None,
                "keys": {"p256dh": self.p256dh(), "auth": b64u(self.auth)}}


@dataclass
class Received:
    phone: str
    at: float  # time.time() when it arrived
    payload: dict[str, Any]
    claims: dict[str, Any]
    headers: dict[str, str]


class VapidError(ValueError):
    pass


def check_vapid(header: str, origin: str, hub_key: str | None, now: float) -> dict[str, Any]:
    """The claims of a valid ``Authorization: vapid t=<jwt>,k=<key>``; raises VapidError."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(f"scheme {scheme!r}")
    parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    token, key = parts.get("t", ""), parts.get("k", "")
    if hub_key is not None and key != hub_key:
        raise VapidError("k is not the hub's public key")
    try:
        head_b, body_b, sig_b = token.split(".")
        head = json.loads(unb64u(head_b))
        claims = json.loads(unb64u(body_b))
        sig = unb64u(sig_b)
    except ValueError as e:
        raise VapidError(f"malformed JWT: {e}") from None
    if head.get("alg") != "ES256" or len(sig) != 64:
        raise VapidError(f"not ES256: {head}")
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(key))
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        pub.verify(der, f"{head_b}.{body_b}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("bad signature") from None
    if claims.get("aud") != origin:
        raise VapidError(f"aud {claims.get('aud')!r} is not {origin!r}")
    exp = int(claims.get("exp", 0))
    if not now < exp <= now + 86400:
        raise VapidError(f"exp {exp} not within 24 h of {int(now)}")
    if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
        raise VapidError("sub is not a mailto: or https: contact")
    return claims  # type: ignore[no-any-return]


class PushService:
    """``hub_key``: the hub's VAPID public key (base64url); None accepts any valid one.
    ``gone``: phones whose endpoint answers 410."""

    def __init__(self, hub_key: str | None = None, port: int = 0) -> None:
        self.hub_key = hub_key
        self.phones: dict[str, Phone] = {}
        self.received: list[Received] = []
        self.refused: list[str] = []
        self.gone: set[str] = set()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def phone(self, name: str) -> Phone:
        p = self.phones[name] = Phone(name)
        return p

    def start(self) -> PushService:
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = svc._take(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until ``start`` again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _take(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        name = path.rsplit("/", 1)[-1]
        phone = self.phones.get(name)
        if phone is None or name in self.gone:
            return 410
        try:
            if headers.get("content-encoding") != "aes128gcm":
                raise VapidError(f"Content-Encoding {headers.get('content-encoding')!r}")
            claims = check_vapid(headers.get("authorization", ""), self.url, self.hub_key,
                                 time.time())
            plain = http_ece.decrypt(body, private_key=phone.key, auth_secret=phone.auth,
                                     version="aes128gcm")
            payload = json.loads(plain)
        except (VapidError, ValueError, KeyError) as e:
            with self._lock:
                self.refused.append(f"{name}: {e}")
            return 401 if isinstance(e, VapidError) else 400
        with self._arrived:
            self.received.append(Received(name, time.time(), payload, claims, headers))
            self._arrived.notify_all()
        return 201

    def wait(self, count: int, timeout: float = 10.0, phone: str | None = None
             ) -> list[Received]:
        """The messages (of ``phone``) once at least ``count`` arrived, or raise."""
        end = time.monotonic() + timeout
        with self._arrived:
            while True:
                got = [r for r in self.received if phone is None or r.phone == phone]
                if len(got) >= count:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {count} push messages; "
                                       f"refused: {self.refused[-3:]}")
                self._arrived.wait(left)
