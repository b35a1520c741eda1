"""Each channel's request as its vendor documents it, signatures recomputed here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from pydantic import TypeAdapter, ValidationError

from hub.alerts.notifiers import registry
from hub.alerts.notifiers.channels import ChannelConfig
from hub.alerts.notifiers.registry import Message

NOW = datetime(2026, 12, 2, 8, 30, 5, tzinfo=UTC)
MSG = Message(title="【紧急】呼救 #7 SOS 3-2-501", lines=("新告警，第 0 级", "SOS (new)"),
              url="https://hub.example/api/incidents/7", severity="critical", incident_id=7)
CFG = TypeAdapter(ChannelConfig)


def _build(entry: dict, secrets: dict, to: str | None = None, callback: str = ""):
    cfg = CFG.validate_python(entry)
    kind = registry.load()[cfg.kind]
    return kind.request(cfg, secrets, MSG, to=to, reference=41, callback=callback, now=NOW)


def test_dingtalk_signs_timestamp_and_secret_in_the_query() -> None:
    req = _build({"kind": "dingtalk", "name": "d", "grids": ["410102"], "token_env": "T",
                  "secret_env": "S"}, {"T": "tok", "S": "SECxyz"})
    q = parse_qs(urlsplit(req.url).query)
    assert q["access_token"] == ["tok"]
    ts = q["timestamp"][0]
    assert ts == str(int(NOW.timestamp() * 1000))
    want = base64.b64encode(hmac.new(b"SECxyz", f"{ts}\nSECxyz".encode(),
                                     hashlib.sha256).digest()).decode()
    assert q["sign"] == [want]
    assert "sign=" + want.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D") in req.url
    body = json.loads(req.body)
    assert body["msgtype"] == "actionCard"
    assert body["actionCard"]["singleURL"] == MSG.url
    assert body["actionCard"]["text"].startswith("### 【紧急】")


def test_feishu_signs_with_timestamp_and_secret_as_the_key() -> None:
    req = _build({"kind": "feishu", "name": "f", "grids": ["410102"], "token_env": "T",
                  "secret_env": "S"}, {"T": "hook-id", "S": "sec"})
    assert req.url == "https://open.feishu.cn/open-apis/bot/v2/hook/hook-id"
    body = json.loads(req.body)
    assert body["timestamp"] == str(int(NOW.timestamp()))
    key = f"{body['timestamp']}\nsec".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "interactive"
    assert body["card"]["header"]["template"] == "red"
    assert body["card"]["elements"][1]["actions"][0]["url"] == MSG.url


def test_wecom_markdown_with_the_key_in_the_query() -> None:
    req = _build({"kind": "wecom", "name": "w", "grids": ["410102"], "key_env": "K"},
                 {"K": "k-1"})
    assert parse_qs(urlsplit(req.url).query) == {"key": ["k-1"]}
    body = json.loads(req.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith('## <font color="warning">【紧急】')
    assert f"({MSG.url})" in body["markdown"]["content"]


def test_sms_template_escapes_for_json_and_form() -> None:
    entry = {"kind": "sms", "name": "s", "url": "https://sms.example/send",
             "auth_env": "A", "receipt_env": "R",
             "body": '{{"to":"{phone}","text":"{message}","ref":"{reference}","cb":"{callback}"}}'}
    req = _build(entry, {"A": "Bearer x", "R": "r"}, to="13800000000", callback="https://h/cb?t=1")
    doc = json.loads(req.body)
    assert doc == {"to": "13800000000", "text": doc["text"], "ref": "41", "cb": "https://h/cb?t=1"}
    assert doc["text"].startswith("【紧急】呼救") and doc["text"].endswith(MSG.url)
    assert req.headers["Authorization"] == "Bearer x"
    form = _build({**entry, "content_type": "application/x-www-form-urlencoded",
                   "body": "to={phone}&msg={message}"}, {"A": "a", "R": "r"}, to="+86 1")
    assert unquote_plus(form.body.decode().split("&msg=")[1]).startswith("【紧急】")
    assert form.body.startswith(b"to=%2B86+1&")


@pytest.mark.parametrize("entry", [
    {"kind": "dingtalk", "name": "d", "grids": ["410102"], "token_env": "T",
     "url": "https://oapi.dingtalk.com/robot/send?access_token=abc"},
    {"kind": "wecom", "name": "w", "grids": ["410102"], "key_env": "K",
     "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6"},
    {"kind": "feishu", "name": "f", "grids": ["410102"], "token_env": "T",
     "url": "https://open.feishu.cn/open-apis/bot/v2/hook/2a1b-uuid"},
    {"kind": "dingtalk", "name": "d", "grids": ["410102"], "token_env": "T",
     "secret": "SEC123"},
    {"kind": "dingtalk", "name": "d", "grids": ["410102"], "token_env": "T",
     "secret_env": "SECa1b2c3d4e5f6"},
    {"kind": "sms", "name": "s", "url": "https://u:p@sms.example/", "body": "{phone}{message}"},
])
def test_a_literal_secret_is_refused(entry: dict) -> None:
    with pytest.raises(ValidationError):
        CFG.validate_python(entry)


def test_vendor_answers() -> None:
    ding = registry.load()["dingtalk"]
    assert ding.accepted(200, b'{"errcode":0,"errmsg":"ok"}') is None
    assert "310000" in (ding.accepted(200, b'{"errcode":310000,"errmsg":"sign"}') or "")
    assert ding.accepted(502, b"") == "HTTP 502"
    assert registry.load()["feishu"].accepted(200, b'{"code":19021,"msg":"sign"}')
    assert registry.load()["feishu"].accepted(200, b'{"code":0}') is None
