"""The embedded default provider: accepts sends like a real one, then answers over HTTP.

For each accepted message it later POSTs Cloud-API-format webhooks, signed with
``META_APP_SECRET``, to ``SIMULATOR_WEBHOOK_URL`` (default ``PUBLIC_URL/webhooks/simulator``):
``sent``, then ``delivered`` and ``read``, or ``failed`` (131026) for a share of numbers, and
for another share a text reply to Message 1. Which number fails or replies is decided by a
hash of the number, so a test knows each contact's fate in advance (``simulated_fate``).
``SIMULATOR_DROP_RATE`` loses that share of reply webhooks on purpose, as a real network
sometimes does (E3).
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import httpx

from relance.config import Settings
from relance.providers import meta_errors
from relance.providers.base import OutboundMessage, SendResult
from relance.providers.meta_webhooks import message_payload, sign, status_payload

log = logging.getLogger(__name__)
Fate = Literal["fail", "reply", "silent"]
REPLY_TEXT = "Oui, ça m'intéresse !"


def _unit(phone: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{phone}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_fate(phone: str, failure_rate: float, reply_rate: float) -> Fate:
    """What the simulator will do with Message 1 to ``phone``: deterministic per number."""
    if _unit(phone, "fail") < failure_rate:
        return "fail"
    return "reply" if _unit(phone, "reply") < reply_rate else "silent"


def reply_dropped(phone: str, drop_rate: float) -> bool:
    return _unit(phone, "drop") < drop_rate


class SimulatorProvider:
    name = "simulator"

    def __init__(
        self, settings: Settings, post: Callable[[bytes, dict[str, str]], None] | None = None
    ) -> None:
        self.settings = settings
        self.url = settings.effective_simulator_webhook_url
        self._client = httpx.Client(timeout=10)
        self._post = post or self._http_post
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="simulator-webhooks", daemon=True)
        self._thread.start()

    # Provider interface ---------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        wamid = f"wamid.SIM{uuid.uuid4().hex}"
        s = self.settings
        fate = simulated_fate(message.to, s.simulator_failure_rate, s.simulator_reply_rate)
        digits = message.to.lstrip("+")
        status = {
            "id": wamid,
            "recipient_id": digits,
            "biz_opaque_callback_data": str(message.message_id),
        }
        at = time.time()
        self._schedule(at + self._delay(0.2), status_payload([{**status, "status": "sent"}]))
        if message.kind == "message_1" and fate == "fail":
            failed = {
                **status,
                "status": "failed",
                "errors": [meta_errors.status_error(131026)],
            }
            self._schedule(at + self._delay(0.5), status_payload([failed]))
            return SendResult(wamid)
        delivered_at = at + self._delay(0.5)
        self._schedule(delivered_at, status_payload([{**status, "status": "delivered"}]))
        if message.kind == "message_1" and fate == "reply":
            read_at = delivered_at + self._delay(0.3)
            self._schedule(read_at, status_payload([{**status, "status": "read"}]))
            if not reply_dropped(message.to, s.simulator_drop_rate):
                reply = {
                    "from": digits,
                    "id": f"wamid.SIMIN{uuid.uuid4().hex}",
                    "timestamp": str(int(read_at)),
                    "type": "text",
                    "text": {"body": REPLY_TEXT},
                    "context": {"from": "15550000000", "id": wamid},
                }
                self._schedule(read_at + self._delay(0.5), message_payload([reply]))
        return SendResult(wamid)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=2)
        self._client.close()

    # Webhook delivery -----------------------------------------------------------------------

    def _delay(self, share: float) -> float:
        s = self.settings
        return share * random.uniform(s.simulator_min_delay_seconds, s.simulator_max_delay_seconds)

    def _schedule(self, at: float, payload: dict[str, Any]) -> None:
        with self._cv:
            heapq.heappush(self._heap, (at, next(self._seq), payload))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0][0] > time.time()):
                    timeout = self._heap[0][0] - time.time() if self._heap else None
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, payload = heapq.heappop(self._heap)
            self._deliver(payload)

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, self.settings.meta_app_secret),
        }
        for attempt in range(6):  # Meta retries failed deliveries too
            try:
                self._post(body, headers)
                return
            except Exception as exc:
                if attempt == 5:
                    log.warning("simulator webhook lost", extra={"error": str(exc)})
                    return
                time.sleep(min(5.0, 0.2 * 2**attempt))

    def _http_post(self, body: bytes, headers: dict[str, str]) -> None:
        response = self._client.post(self.url, content=body, headers=headers)
        response.raise_for_status()
