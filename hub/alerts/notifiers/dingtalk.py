"""DingTalk (钉钉) custom robot: ``POST {url}?access_token=..&timestamp=..&sign=..``.

加签: the string ``timestamp + "\\n" + secret`` is signed with HMAC-SHA256 under the
secret, base64-encoded and URL-encoded into ``sign``; ``timestamp`` is milliseconds
and DingTalk refuses one more than an hour off. The message is an ``actionCard``
(a button opening the incident) or ``markdown``; the answer's ``errcode`` must be 0."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from hub.alerts.notifiers.registry import HttpRequest, Message, register
from hub.alerts.notifiers.wecom import json_answer


def signature(timestamp_ms: int, secret: str) -> str:
    """The base64 HMAC-SHA256 DingTalk checks (before URL encoding)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()).decode()


class DingTalk:
    kind = "dingtalk"

    def request(self, cfg: Any, secrets: Mapping[str, str], message: Message, *,
                to: str | None, reference: int, callback: str,
                now: datetime) -> HttpRequest:
        text = "\n\n".join([f"### {message.title}", *message.lines])
        if cfg.style == "actionCard":
            body: dict[str, Any] = {"msgtype": "actionCard", "actionCard": {
                "title": message.title, "text": text, "btnOrientation": "0",
                "singleTitle": "查看事件 / Open incident", "singleURL": message.url}}
        else:
            body = {"msgtype": "markdown", "markdown": {
                "title": message.title,
                "text": f"{text}\n\n[查看事件 / Open incident]({message.url})"}}
        query = {"access_token": secrets[cfg.token_env]}
        if cfg.secret_env:
            ts = int(now.timestamp() * 1000)
            query |= {"timestamp": str(ts), "sign": signature(ts, secrets[cfg.secret_env])}
        return HttpRequest("POST", f"{cfg.url}?{urlencode(query)}",
                           json.dumps(body, ensure_ascii=False).encode(),
                           {"Content-Type": "application/json; charset=utf-8"})

    def accepted(self, status: int, body: bytes) -> str | None:
        return json_answer(status, body, "errcode")


CHANNEL = register(DingTalk())
