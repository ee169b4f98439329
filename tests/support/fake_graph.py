"""A fake WhatsApp Cloud API that records every send and, like Meta, posts signed status webhooks.

It answers ``POST /{version}/{phone_number_id}/messages`` with a fresh ``wamid`` (or a 429 when
``rate_limit`` says so), records what it accepted with the arrival time, and then POSTs a
``sent`` status carrying ``biz_opaque_callback_data`` to relance's ``/webhooks/meta``, so that a
message whose worker died before recording the answer is still matched.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from relance.providers.meta_webhooks import sign, status_payload


@dataclass(frozen=True)
class Accepted:
    at: float
    to: str
    our_id: int
    wamid: str
    text: str


class FakeGraph:
    def __init__(
        self,
        app_secret: str = "fake-secret",
        rate_limit: Callable[[int], bool] = lambda n: False,
        delay: float = 0.0,
    ) -> None:
        self.app_secret = app_secret
        self.rate_limit = rate_limit
        self.delay = delay
        self.webhook_url: str | None = None
        self.accepted: list[Accepted] = []
        self.rejected = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._webhooks: queue.Queue[dict[str, Any] | None] = queue.Queue()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, answer = fake._answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0.2")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._post_webhooks, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.requests += 1
            n = self.requests
        if self.rate_limit(n):
            with self._lock:
                self.rejected += 1
            return 429, {"error": {"code": 130429, "message": "Rate limit hit"}}
        wamid = f"wamid.FAKE{uuid.uuid4().hex}"
        accepted = Accepted(
            at=time.time(),
            to=body["to"],
            our_id=int(body["biz_opaque_callback_data"]),
            wamid=wamid,
            text=(body.get("text") or {}).get("body", ""),
        )
        with self._lock:
            self.accepted.append(accepted)
        if self.webhook_url:
            self._webhooks.put(
                status_payload(
                    [
                        {
                            "id": wamid,
                            "status": "sent",
                            "timestamp": str(int(accepted.at)),
                            "recipient_id": accepted.to,
                            "biz_opaque_callback_data": str(accepted.our_id),
                        }
                    ]
                )
            )
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid}],
        }

    def _post_webhooks(self) -> None:
        with httpx.Client(timeout=10) as client:
            while (payload := self._webhooks.get()) is not None:
                body = json.dumps(payload).encode()
                headers = {
                    "X-Hub-Signature-256": sign(body, self.app_secret),
                    "Content-Type": "application/json",
                }
                for _ in range(50):  # Meta retries a webhook until it is accepted
                    try:
                        if (
                            client.post(
                                self.webhook_url or "", content=body, headers=headers
                            ).status_code
                            == 200
                        ):
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)

    def sends_per_message(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        with self._lock:
            for a in self.accepted:
                counts[a.our_id] = counts.get(a.our_id, 0) + 1
        return counts

    def close(self) -> None:
        self._webhooks.put(None)
        self._server.shutdown()
        self._server.server_close()
