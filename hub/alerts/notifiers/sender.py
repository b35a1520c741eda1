"""Delivers outbox rows of the registered chat and SMS channels: the channel's
request built from the row's message and the environment's secrets, sent over
HTTP, the vendor's answer judged. Raises ``DeliveryError`` for anything worth a
retry (the outbox backs off); a missing secret is one too, so setting it later
delivers what waited."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from hub.alerts.notifiers import registry
from hub.alerts.notifiers.channels import SecretMissing, secret
from hub.alerts.notifiers.registry import HttpRequest, Message
from hub.alerts.notifiers.webhook import DeliveryError
from hub.store.outbox import OutboxItem

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 * 1024


def summary_message(items: Sequence[OutboxItem]) -> Message:
    msgs = [Message.from_dict(i.payload.get("message", {})) for i in items]
    lines = tuple(m.title for m in msgs[:5]) + (
        (f"+{len(msgs) - 5}",) if len(msgs) > 5 else ())
    worst = next((m for m in msgs if m.severity == "critical"), msgs[0])
    return Message(title=f"{len(msgs)} 条告警（限流合并） / {len(msgs)} alerts (rate-limited)",
                   lines=lines, url=worst.url, severity=worst.severity)


def receipt_url(public_url: str, channel: str, token: str) -> str:
    return (f"{public_url.rstrip('/')}/api/notify/receipts/{quote(channel)}"
            f"?token={quote(token, safe='')}")


def send(req: HttpRequest, timeout: float = 5.0) -> tuple[int, bytes]:
    r = urllib.request.Request(req.url, data=req.body, method=req.method,
                               headers={"User-Agent": "smart-community-hub", **req.headers})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:  # noqa: S310 - configured
            return int(resp.status), resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as e:
        return int(e.code), b""
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        # The URL may carry a robot's key: name only its host.
        host = urllib.request.urlparse(req.url).netloc
        raise DeliveryError(f"{host} unreachable: {getattr(e, 'reason', e)}") from None


class ChannelSender:
    """``channels``: the site's channel entries by name; ``public_url``: where the
    gateway's receipts reach the hub."""

    def __init__(self, channels: Mapping[str, Any], public_url: str = "",
                 timeout: float = 5.0) -> None:
        self.channels = dict(channels)
        self.public_url = public_url
        self.timeout = timeout
        registry.load()

    def handles(self, channel: str) -> bool:
        return channel in registry.KINDS

    def deliver(self, items: list[OutboxItem], now: datetime) -> None:
        first = items[0]
        cfg = self.channels.get(first.target or "")
        if cfg is None:
            raise DeliveryError(f"channel {first.target!r} is not in the site file")
        kind = registry.KINDS[first.channel]
        try:
            secrets = {n: secret(n) for n in cfg.secrets()}
        except SecretMissing as e:
            raise DeliveryError(str(e)) from None
        message = (Message.from_dict(first.payload.get("message", {})) if len(items) == 1
                   else summary_message(items))
        callback = ""
        if getattr(cfg, "receipt_env", None):
            callback = receipt_url(self.public_url, cfg.name, secrets[cfg.receipt_env])
        req = kind.request(cfg, secrets, message, to=first.payload.get("phone"),
                           reference=first.id, callback=callback, now=now)
        status, answer = send(req, self.timeout)
        err = kind.accepted(status, answer)
        if err is not None:
            raise DeliveryError(f"{cfg.name}: {err}")
        log.info("notification delivered", extra={
            "channel": cfg.name, "kind": first.channel, "incident": first.incident_id,
            "delivery": first.id, "coalesced": len(items)})
