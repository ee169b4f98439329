"""A local fake HTTP server for provider adapters: records requests, answers programmed responses.

A Starlette app under uvicorn in a background thread, on a socket bound to a free port before
the thread starts (so there is no race for the port). Tests queue responses with ``respond`` and
read what the adapter sent from ``requests``::

    with FakeHttpServer() as server:
        server.respond(FakeResponse(200, json={"messages": [{"id": "wamid.1"}]}))
        ...  # point the adapter at server.url, send
        assert server.requests[0].path == "/v21.0/123/messages"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

READY_DEADLINE_SECONDS = 10.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass(frozen=True)
class FakeResponse:
    status: int = 200
    json: Any = None
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds the server waits before answering (timeout tests)

    def render(self) -> Response:
        if self.json is not None:
            content, media_type = json.dumps(self.json), "application/json"
        else:
            content, media_type = self.text, "text/plain"
        return Response(content, self.status, headers=self.headers, media_type=media_type)


class FakeHttpServer:
    """Records every request; answers queued responses in order, then ``default``."""

    def __init__(self, default: FakeResponse | None = None) -> None:
        self.default = default or FakeResponse(200, json={})
        self.requests: list[RecordedRequest] = []
        self._queue: deque[FakeResponse] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self._handle,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                )
            ]
        )
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, default: FakeResponse | None = None) -> None:
        """Forget recorded requests and queued responses (one server shared by many tests)."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.default = default or FakeResponse(200, json={})

    def respond(self, *responses: FakeResponse) -> None:
        """Queue responses, answered one per request in order."""
        with self._lock:
            self._queue.extend(responses)

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
            response = self._queue.popleft() if self._queue else self.default
        if response.delay:
            await self._pause(response.delay)
        return response.render()

    async def _pause(self, seconds: float) -> None:
        # Cut short by stop(), so shutdown neither waits for nor cancels a slow handler.
        with self._lock:
            if self._release is None:
                self._loop = asyncio.get_running_loop()
                self._release = asyncio.Event()
            release = self._release
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), seconds)

    def start(self) -> FakeHttpServer:
        self._thread.start()
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"fake server did not start on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.01)
            else:
                # The port accepts; uvicorn flips ``started`` right after it listens.
                time.sleep(0.001)
        return self

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None and self._release is not None:
                self._loop.call_soon_threadsafe(self._release.set)
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
