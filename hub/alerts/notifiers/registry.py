"""The notifier boundary: a chat or SMS channel is one module that turns a
:class:`Message` into the HTTP request its vendor documents and judges the answer.

A channel module defines a class meeting :class:`Channel` and registers it under its
``kind`` (``register(Kind())``) at import; its site-file entry is a model in
``channels.py``. The outbox rows (``plan.py``) and the dispatcher's sender
(``sender.py``) look channels up here, so a new channel changes no incident, store
or console code. Building the request is pure (secrets, the message and the time
in; bytes out), so each vendor's format and signature is tested to the byte."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """What every channel renders: Chinese first, then English, and the link."""

    title: str  # 【紧急】跌倒 #12 — 张桂兰 3-2-501
    lines: tuple[str, ...]  # further lines, zh first
    url: str  # the incident (or an answer page)
    severity: str = "info"
    incident_id: int | None = None

    def text(self) -> str:
        return "\n".join((self.title, *self.lines, self.url))

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "lines": list(self.lines), "url": self.url,
                "severity": self.severity, "incident_id": self.incident_id}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(title=str(d.get("title", "")), lines=tuple(str(x) for x in d.get("lines", ())),
                   url=str(d.get("url", "")), severity=str(d.get("severity", "info")),
                   incident_id=d.get("incident_id"))


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Channel(Protocol):
    kind: str

    def request(self, cfg: Any, secrets: Mapping[str, str], message: Message, *,
                to: str | None, reference: int, callback: str,
                now: datetime) -> HttpRequest:
        """The request that delivers ``message`` (``to``: a phone, for SMS)."""
        ...

    def accepted(self, status: int, body: bytes) -> str | None:
        """None when the vendor took the message, else why not (retried)."""
        ...


KINDS: dict[str, Channel] = {}


def register(channel: Channel) -> Channel:
    if channel.kind in KINDS and KINDS[channel.kind] is not channel:
        raise ValueError(f"notifier kind {channel.kind!r} registered twice")
    KINDS[channel.kind] = channel
    return channel


def load() -> dict[str, Channel]:
    """Import the built-in channel modules (they register themselves)."""
    from hub.alerts.notifiers import dingtalk, feishu, smsgateway, wecom  # noqa: F401

    return KINDS
