"""Feishu (飞书) custom bot: ``POST {url}/{hook id}`` with an interactive card.

签名校验: ``timestamp + "\\n" + secret`` is the HMAC-SHA256 *key* over an empty
message; the base64 digest is ``sign``, sent with ``timestamp`` (seconds, within an
hour of Feishu's clock) in the body. The answer's ``code`` must be 0."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from hub.alerts.notifiers.registry import HttpRequest, Message, register
from hub.alerts.notifiers.wecom import json_answer

_TEMPLATE = {"critical": "red", "major": "orange", "minor": "yellow", "info": "blue"}


def signature(timestamp_s: int, secret: str) -> str:
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class Feishu:
    kind = "feishu"

    def request(self, cfg: Any, secrets: Mapping[str, str], message: Message, *,
                to: str | None, reference: int, callback: str,
                now: datetime) -> HttpRequest:
        card = {
            "config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": message.title},
                       "template": _TEMPLATE.get(message.severity, "blue")},
            "elements": [
                {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(message.lines)}},
                {"tag": "action", "actions": [{
                    "tag": "button", "type": "primary", "url": message.url,
                    "text": {"tag": "plain_text", "content": "查看事件 / Open incident"}}]},
            ],
        }
        body: dict[str, Any] = {"msg_type": "interactive", "card": card}
        if cfg.secret_env:
            ts = int(now.timestamp())
            body = {"timestamp": str(ts), "sign": signature(ts, secrets[cfg.secret_env]), **body}
        url = f"{cfg.url.rstrip('/')}/{quote(secrets[cfg.token_env], safe='')}"
        return HttpRequest("POST", url, json.dumps(body, ensure_ascii=False).encode(),
                           {"Content-Type": "application/json; charset=utf-8"})

    def accepted(self, status: int, body: bytes) -> str | None:
        return json_answer(status, body, "code")


CHANNEL = register(Feishu())
