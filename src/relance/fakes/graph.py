"""A fake WhatsApp Cloud API (Graph): what the bench measures against, and what tests send to.

A raw asyncio HTTP/1.1 server with keep-alive, so that it is never the bottleneck of a dispatch
figure. Every ``POST .../messages`` is answered at once like Meta does, with a fresh ``wamid``,
and recorded (``accepted``: arrival time, recipient, our message id, text). On demand it also:

* answers a 429 (130429, ``Retry-After``) to the requests ``rate_limit(n)`` picks;
* answers the sends to the numbers of ``errors`` with that Meta error code, in Meta's own body
  and HTTP status (``relance.providers.meta_errors``), and accepts those to the numbers of
  ``failures``, then reports them ``failed`` with that code in the status webhook, as Meta does
  for the failures it finds after accepting a message (131049, 131050, 131047...);
* waits ``delay`` seconds before answering (a slow provider, many requests in flight);
* posts a signed ``sent`` status carrying ``biz_opaque_callback_data`` to ``webhook_url`` for
  each accepted send, one after the other, retried until answered 200, as Meta does (up to
  ``webhook_attempts`` times, ``WEBHOOK_RETRY_SECONDS`` apart; ``webhook_refusals`` counts the
  answers other than 200, ``webhooks_lost`` those it gave up);
* then, for the sends ``replies`` gives a text, posts the contact's signed reply to it (a text
  message whose ``context.id`` is the send's ``wamid``), the same way; with ``webhook_batch``,
  up to that many waiting webhooks go in one body (one ``entry`` each), as Meta batches them;
* keeps the first arrival time, per recipient, of texts starting with ``mark`` (the bench's
  "Message 2 handed to the provider" moment);
* serves ``GET /{version}/{waba_id}/message_templates`` from ``templates``, ``page_size`` at a
  time with Meta's cursor paging (``paging.cursors.before/after``, ``next`` and ``previous``
  URLs; an unknown WABA id is Meta's code 100 error), counting the requests in
  ``template_requests``; with ``keep_templates``, each accepted send keeps its ``template``;
* serves ``GET /{version}/{phone_number_id}?fields=...`` from ``numbers`` (``graph_numbers``:
  messaging limit, quality rating, throughput), counting them in ``number_requests``.

In a test it runs in a thread of the test process (``start``/``close``, or ``with``); the bench
runs it alone: ``python -m relance.fakes.graph PORT [--mark PREFIX]``, and reads
``GET /_fake/stats``: ``{"sent": N, "marked": {to: epoch seconds}}``; tests read the send log,
each send's arrival time and number, at ``GET /_fake/accepted``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from relance.fakes.graph_numbers import number_fields, number_id, unknown_object
from relance.fakes.graph_webhooks import Accepted, merged, reply_body, status_body
from relance.providers import meta_errors
from relance.providers.meta_webhooks import sign

STATS_PATH = "/_fake/stats"
ACCEPTED_PATH = "/_fake/accepted"  # the send log: [[at, to, number, our_id], ...]
WEBHOOK_ATTEMPTS = 50  # Meta retries a webhook until it is accepted
WEBHOOK_RETRY_SECONDS = 0.2
_RATE_LIMITED = json.dumps(meta_errors.error_body(130429)).encode()
_NOT_FOUND = b'{"error": {"code": 100, "message": "unknown path"}}'


def cursor(offset: int) -> str:
    """Graph API cursors are base64 with '=' written 'ZD': 0 -> 'MAZDZD', 24 -> 'MjQZD'."""
    return base64.b64encode(str(offset).encode()).decode().replace("=", "ZD")


def offset_of(value: str) -> int:
    padding = 0
    while value.endswith("ZD") and padding < 2:
        value, padding = value[:-2], padding + 1
    return int(base64.b64decode(value + "=" * padding))


class FakeGraph:
    def __init__(
        self,
        app_secret: str = "fake-secret",
        rate_limit: Callable[[int], bool] | None = None,
        delay: float = 0.0,
        webhook_url: str | None = None,
        mark: str | None = None,
        templates: list[dict[str, Any]] | None = None,
        waba_id: str = "102290129340398",
        page_size: int = 25,
        keep_templates: bool = False,
        errors: Mapping[str, int] | None = None,
        failures: Mapping[str, int] | None = None,
        replies: Callable[[Accepted], str | None] | None = None,
        webhook_attempts: int = WEBHOOK_ATTEMPTS,
        webhook_batch: int = 1,
        numbers: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.app_secret = app_secret
        # phone_number_id -> the fields Meta answers for it (``graph_numbers``).
        self.numbers = numbers if numbers is not None else {}
        self.number_requests = 0
        self.webhook_batch = webhook_batch
        self.replies = replies
        self.webhook_attempts = webhook_attempts
        self.webhook_refusals = 0
        self.webhooks_lost = 0
        self.replies_posted = 0
        # Recipient (digits, as sent in "to") -> Meta error code: answered at once / reported
        # failed by webhook after the send was accepted.
        self.errors = dict(errors or {})
        self.failures = dict(failures or {})
        self.rate_limit = rate_limit
        self.delay = delay
        self.webhook_url = webhook_url
        self.mark = mark
        self.templates = templates or []
        self.waba_id = waba_id
        self.page_size = page_size
        # Off for the bench: a million sends would keep a million dicts.
        self.keep_templates = keep_templates
        self.template_requests = 0
        self.accepted: list[Accepted] = []
        self.marked: dict[str, float] = {}
        self.requests = 0
        self.rejected = 0
        self.port = 0
        self._prefix = f"wamid.FAKE{uuid.uuid4().hex[:12]}."
        self._connections = 0
        self._in_flight = 0
        self._webhooks_pending = 0
        self._webhooks: asyncio.Queue[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # What tests read ---------------------------------------------------------------------

    def sends_per_message(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for accepted in list(self.accepted):
            counts[accepted.our_id] = counts.get(accepted.our_id, 0) + 1
        return counts

    def settled(self) -> bool:
        """No client connected, no request being answered, no status webhook left to post:
        every send a (now dead) client made is answered and reported."""
        return self._connections == self._in_flight == self._webhooks_pending == 0

    def webhooks_posted(self) -> bool:
        """Every webhook queued so far was answered 200 (or given up: ``webhooks_lost``)."""
        return self._webhooks_pending == 0

    # Requests ----------------------------------------------------------------------------

    def _route(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"POST" and path.endswith(b"/messages"):
            return self._send(body, path.decode().rstrip("/").split("/")[-2])
        if method == b"GET" and urlsplit(path.decode()).path.endswith("/message_templates"):
            return self._message_templates(path.decode())
        if method == b"GET" and number_id(path.decode()) is not None:
            self.number_requests += 1
            return number_fields(self.numbers, path.decode())
        if method == b"GET" and path == STATS_PATH.encode():
            return 200, json.dumps({"sent": len(self.accepted), "marked": self.marked}).encode()
        if method == b"GET" and path == ACCEPTED_PATH.encode():
            log = [[a.at, a.to, a.number, a.our_id] for a in self.accepted]
            return 200, json.dumps(log).encode()
        return 404, _NOT_FOUND

    def _send(self, body: bytes, number: str = "") -> tuple[int, bytes]:
        self.requests += 1
        if self.rate_limit is not None and self.rate_limit(self.requests):
            self.rejected += 1
            return 429, _RATE_LIMITED
        now = time.time()
        payload: dict[str, Any] = json.loads(body)
        to = str(payload.get("to", ""))
        if to in self.errors:
            self.rejected += 1
            code = self.errors[to]
            return meta_errors.BY_CODE[code].http_status, json.dumps(
                meta_errors.error_body(code)
            ).encode()
        text = str((payload.get("text") or {}).get("body", ""))
        wamid = f"{self._prefix}{len(self.accepted) + 1}"
        our_id = int(payload.get("biz_opaque_callback_data") or 0)
        template = payload.get("template") if self.keep_templates else None
        accepted = Accepted(now, to, our_id, wamid, text, template, number)
        self.accepted.append(accepted)
        if self.mark and text.startswith(self.mark):
            self.marked.setdefault(to, now)
        if self.webhook_url and self._webhooks is not None:
            self._webhooks_pending += 1
            self._webhooks.put_nowait(status_body(accepted, self.failures.get(to)))
            reply = self.replies(accepted) if self.replies is not None else None
            if reply is not None:
                self._webhooks_pending += 1
                self._webhooks.put_nowait(reply_body(accepted, reply))
                self.replies_posted += 1
        return 200, (
            b'{"messaging_product":"whatsapp","contacts":[{"input":"%s","wa_id":"%s"}],'
            b'"messages":[{"id":"%s"}]}' % (to.encode(), to.encode(), wamid.encode())
        )

    def _message_templates(self, target: str) -> tuple[int, bytes]:
        """One page of ``templates`` as Meta pages ``GET /{waba_id}/message_templates``."""
        self.template_requests += 1
        url = urlsplit(target)
        waba_id = url.path.rstrip("/").split("/")[-2]
        if waba_id != self.waba_id:
            return unknown_object(waba_id)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        size = int(query.get("limit", self.page_size))
        size = max(1, min(size, self.page_size))
        start = offset_of(query["after"]) + 1 if "after" in query else 0
        page = self.templates[start : start + size]
        body: dict[str, Any] = {"data": page}
        if page:
            last = start + len(page) - 1
            paging: dict[str, Any] = {"cursors": {"before": cursor(start), "after": cursor(last)}}
            base = f"{self.url}{url.path}?"
            if last + 1 < len(self.templates):
                paging["next"] = base + urlencode({**query, "after": cursor(last)})
            if start > 0:
                paging["previous"] = base + urlencode(
                    {k: v for k, v in {**query, "before": cursor(start)}.items() if k != "after"}
                )
            body["paging"] = paging
        return 200, json.dumps(body).encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                self._in_flight += 1
                try:
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    status, payload = self._route(method, path, body)
                    retry = b"Retry-After: 0.2\r\n" if status == 429 else b""
                    writer.write(
                        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
                        b"Content-Length: %d\r\n\r\n%s"
                        % (status, _reason(status), retry, len(payload), payload)
                    )
                    await writer.drain()
                finally:
                    self._in_flight -= 1
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ):
            pass
        finally:
            self._connections -= 1
            writer.close()

    # Status webhooks ---------------------------------------------------------------------

    async def _post_webhooks(self, queue: asyncio.Queue[bytes]) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                bodies = [await queue.get()]
                while len(bodies) < self.webhook_batch and not queue.empty():
                    bodies.append(queue.get_nowait())
                body = bodies[0] if len(bodies) == 1 else merged(bodies)
                headers = {
                    "X-Hub-Signature-256": sign(body, self.app_secret),
                    "Content-Type": "application/json",
                }
                try:
                    for _ in range(self.webhook_attempts):
                        with contextlib.suppress(httpx.HTTPError):
                            response = await client.post(
                                self.webhook_url or "", content=body, headers=headers
                            )
                            if response.status_code == 200:
                                break
                        self.webhook_refusals += 1  # an error answer, or none at all
                        await asyncio.sleep(WEBHOOK_RETRY_SECONDS)
                    else:
                        self.webhooks_lost += 1
                finally:
                    self._webhooks_pending -= len(bodies)

    # Serving -----------------------------------------------------------------------------

    async def serve(self, port: int = 0, ready: Callable[[], None] = lambda: None) -> None:
        """Serve on 127.0.0.1:``port`` (0: a free one, then in ``self.port``) until ``close``."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._webhooks = asyncio.Queue()
        poster = asyncio.create_task(self._post_webhooks(self._webhooks))
        server = await asyncio.start_server(self._handle, "127.0.0.1", port, backlog=1024)
        self.port = int(server.sockets[0].getsockname()[1])
        ready()
        try:
            async with server:
                await self._stop.wait()
        finally:
            poster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poster

    def start(self) -> FakeGraph:
        """Serve from a thread of this process; returns once the port accepts connections."""
        started = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.serve(ready=started.set)), daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the fake Graph server did not start")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(status: int) -> bytes:
    return HTTPStatus(status).phrase.encode()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m relance.fakes.graph")
    parser.add_argument("port", type=int, nargs="?", default=8765)
    parser.add_argument("--mark", help="record when texts starting with this first arrive")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(FakeGraph(mark=args.mark).serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
