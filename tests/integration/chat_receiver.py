"""A local HTTP receiver that checks each chat channel's documented request format
and signature, as the vendors' servers do (not a test module)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SECRETS = {"DING_TOKEN": "ding-token", "DING_SIGN": "SECding", "FEISHU_TOKEN": "fs-hook",
           "FEISHU_SIGN": "fs-secret", "WECOM_KEY": "wk-1", "SMS_AUTH": "Bearer sms-1",
           "SMS_RECEIPT": "rcpt-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> str | None:
    """None when the request is what the vendor documents, else what is wrong."""
    doc = json.loads(body) if "json" in headers.get("Content-Type", "") else None
    now = time.time()
    if path == "/dingtalk":
        if query.get("access_token") != [SECRETS["DING_TOKEN"]]:
            return "access_token"
        ts = query["timestamp"][0]
        if abs(int(ts) / 1000 - now) > 3600:
            return "timestamp"
        key = SECRETS["DING_SIGN"].encode()
        want = base64.b64encode(hmac.new(key, f"{ts}\n{SECRETS['DING_SIGN']}".encode(),
                                         hashlib.sha256).digest()).decode()
        if query.get("sign") != [want]:
            return "sign"
        card = doc.get("actionCard", {})
        if doc.get("msgtype") != "actionCard" or not card.get("singleURL", "").startswith("http"):
            return "actionCard"
    elif path == "/feishu/" + SECRETS["FEISHU_TOKEN"]:
        ts = doc["timestamp"]
        if abs(int(ts) - now) > 3600:
            return "timestamp"
        key = f"{ts}\n{SECRETS['FEISHU_SIGN']}".encode()
        if doc["sign"] != base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode():
            return "sign"
        if doc.get("msg_type") != "interactive" or "header" not in doc.get("card", {}):
            return "card"
    elif path == "/wecom":
        if query.get("key") != [SECRETS["WECOM_KEY"]]:
            return "key"
        if doc.get("msgtype") != "markdown" or len(doc["markdown"]["content"].encode()) > 4096:
            return "markdown"
    elif path == "/sms":
        if headers.get("Authorization") != SECRETS["SMS_AUTH"]:
            return "auth"
        if not doc.get("to") or not doc.get("text") or not doc.get("callback"):
            return "template"
    else:
        return "path"
    return None


class ChatReceiver:
    """``fail_first``: answer that many requests with HTTP 502 first."""

    def __init__(self, port: int | None = None, fail_first: int = 0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_first = fail_first
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                u = urlsplit(self.path)
                err = check(u.path, parse_qs(u.query), self.headers, body)
                if recv.fail_first > 0:
                    recv.fail_first -= 1
                    self.send_response(502)
                    self.end_headers()
                    return
                recv.calls.append({"path": u.path, "error": err, "body": body})
                answer = ({"code": 0 if err is None else 19021, "msg": err or "success"}
                          if u.path.startswith("/feishu") else
                          {"errcode": 0 if err is None else 310000, "errmsg": err or "ok"})
                raw = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), H)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def channels(base: str, grid: str) -> list[dict[str, Any]]:
    return [
        {"kind": "dingtalk", "name": "g1-dingtalk", "grids": [grid], "url": f"{base}/dingtalk",
         "token_env": "DING_TOKEN", "secret_env": "DING_SIGN"},
        {"kind": "feishu", "name": "g1-feishu", "grids": [grid], "url": f"{base}/feishu",
         "token_env": "FEISHU_TOKEN", "secret_env": "FEISHU_SIGN"},
        {"kind": "wecom", "name": "g1-wecom", "grids": [grid], "url": f"{base}/wecom",
         "key_env": "WECOM_KEY"},
        {"kind": "sms", "name": "sms", "grids": [grid], "url": f"{base}/sms",
         "auth_env": "SMS_AUTH", "receipt_env": "SMS_RECEIPT",
         "body": '{{"to":"{phone}","text":"{message}","ref":"{reference}",'
                 '"callback":"{callback}"}}'},
    ]
