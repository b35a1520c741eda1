"""SMS or voice through an HTTP gateway the site configures: its URL, method,
content type, an authentication header whose value comes from the environment, and
a body template filled with the message, the number, the delivery reference and the
callback URL the gateway posts its delivery receipt to. Any 2xx is accepted."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from hub.alerts.notifiers.registry import HttpRequest, Message, register

MAX_SMS_CHARS = 500  # a long SMS is several parts; gateways cut at 5-10


def _escape(content_type: str) -> Any:
    if "json" in content_type:
        return lambda s: json.dumps(s, ensure_ascii=False)[1:-1]
    return quote_plus


def sms_text(message: Message) -> str:
    text = " ".join((message.title, *message.lines, message.url))
    return text if len(text) <= MAX_SMS_CHARS else text[: MAX_SMS_CHARS - 1] + "…"


class SmsGateway:
    kind = "sms"

    def request(self, cfg: Any, secrets: Mapping[str, str], message: Message, *,
                to: str | None, reference: int, callback: str,
                now: datetime) -> HttpRequest:
        if not to:
            raise ValueError("an SMS needs a phone number")
        esc = _escape(cfg.content_type)
        body = cfg.body.format(message=esc(sms_text(message)), phone=esc(to),
                               reference=esc(str(reference)), callback=esc(callback))
        headers = {"Content-Type": cfg.content_type}
        if cfg.auth_env:
            headers[cfg.auth_header] = secrets[cfg.auth_env]
        return HttpRequest(cfg.method, cfg.url, body.encode(), headers)

    def accepted(self, status: int, body: bytes) -> str | None:
        return None if 200 <= status < 300 else f"HTTP {status}"


CHANNEL = register(SmsGateway())
