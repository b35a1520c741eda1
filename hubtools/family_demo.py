"""The demo's SMS gateway and its family: records every text the hub sends through
the site's family channel, and has one contact answer through the real one-time
link (the page first, then the button), as a relative would on a phone. The other
contacts never answer, so the cascade's window runs out on them. A tool: only
``hub demo`` uses it."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)
LINK = re.compile(r"https?://[^\s\"]+/api/family/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


class DemoGateway:
    def __init__(self, answers: dict[str, str], delay_s: float = 2.0) -> None:
        """``answers``: phone -> the answer that contact gives."""
        self.answers = answers
        self.delay_s = delay_s
        self.texts: list[dict[str, Any]] = []
        self.answered: list[tuple[str, str, int]] = []  # phone, answer, HTTP status
        gw = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 65536))
                try:
                    doc = json.loads(raw)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                gw.texts.append(doc)
                self.send_response(200)
                self.end_headers()
                phone = str(doc.get("to", ""))
                if phone in gw.answers:
                    threading.Thread(target=gw._answer, args=(phone, str(doc.get("text", ""))),
                                     daemon=True).start()

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _answer(self, phone: str, text: str) -> None:
        m = LINK.search(text)
        if not m:
            return
        time.sleep(self.delay_s)
        link, answer = m.group(0), self.answers[phone]
        try:
            with urllib.request.urlopen(link, timeout=5) as r:  # noqa: S310 - the hub's own link
                r.read()
            body = urllib.parse.urlencode({"answer": answer}).encode()
            req = urllib.request.Request(link, data=body, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded"})
            with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
                self.answered.append((phone, answer, int(r.status)))
            log.info("demo family answered", extra={"phone": phone[-4:], "answer": answer})
        except OSError as e:
            log.warning("demo family could not answer", extra={"error": str(e)})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
