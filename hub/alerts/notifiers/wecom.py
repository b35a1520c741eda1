"""WeCom (企业微信) group robot: ``POST {url}?key=<key>`` with a markdown message
(``{"msgtype": "markdown", "markdown": {"content": ...}}``, at most 4096 bytes);
the answer is ``{"errcode": 0, "errmsg": "ok"}``, any other errcode a failure even
with HTTP 200."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from hub.alerts.notifiers.registry import HttpRequest, Message, register

MAX_BYTES = 4096
_COLOUR = {"critical": "warning", "major": "warning", "minor": "comment", "info": "info"}


def cut(text: str, max_bytes: int) -> str:
    """``text`` cut to ``max_bytes`` of UTF-8 on a character boundary."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"


def json_answer(status: int, body: bytes, field: str) -> str | None:
    """Chat robots answer HTTP 200 with an error code in the body."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return "answer is not JSON"
    code = doc.get(field, 0) if isinstance(doc, dict) else None
    if code not in (0, "0"):
        return f"{field} {code}: {str(doc.get('errmsg') or doc.get('msg') or '')[:200]}"
    return None


class WeCom:
    kind = "wecom"

    def request(self, cfg: Any, secrets: Mapping[str, str], message: Message, *,
                to: str | None, reference: int, callback: str,
                now: datetime) -> HttpRequest:
        colour = _COLOUR.get(message.severity, "comment")
        lines = [f'## <font color="{colour}">{message.title}</font>',
                 *(f"> {x}" for x in message.lines),
                 f"[查看事件 / Open incident]({message.url})"]
        body = {"msgtype": "markdown", "markdown": {"content": cut("\n".join(lines), MAX_BYTES)}}
        url = f"{cfg.url}?{urlencode({'key': secrets[cfg.key_env]})}"
        return HttpRequest("POST", url, json.dumps(body, ensure_ascii=False).encode(),
                           {"Content-Type": "application/json; charset=utf-8"})

    def accepted(self, status: int, body: bytes) -> str | None:
        return json_answer(status, body, "errcode")


CHANNEL = register(WeCom())
