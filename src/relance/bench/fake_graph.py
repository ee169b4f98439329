"""An instant fake WhatsApp Cloud API (Graph) server: ``python -m relance.bench.fake_graph PORT``.

A raw asyncio HTTP/1.1 server with keep-alive, so that it is never the bottleneck: every
``POST .../messages`` answers ``{"messages": [{"id": "wamid.bench.N"}]}`` at once. It records
when each Message 2 (a text starting with ``M2_MARKER``) reached it, per recipient number,
which is the moment "Message 2 handed to the provider" of the reply latency figure.

``GET /_bench/stats`` answers ``{"sent": N, "m2": {to: epoch seconds}}``; ``POST /_bench/reset``
forgets everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

M2_MARKER = "bench-m2"
_M2_BYTES = M2_MARKER.encode()


class FakeGraph:
    def __init__(self) -> None:
        self.sent = 0
        self.m2: dict[str, float] = {}

    def route(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        if method == b"POST" and path.endswith(b"/messages"):
            return 200, self._send(body)
        if path.startswith(b"/_bench/stats"):
            return 200, json.dumps({"sent": self.sent, "m2": self.m2}).encode()
        if path.startswith(b"/_bench/reset"):
            self.sent, self.m2 = 0, {}
            return 200, b"{}"
        return 404, b'{"error": {"code": 100, "message": "unknown path"}}'

    def _send(self, body: bytes) -> bytes:
        now = time.time()
        self.sent += 1
        to = ""
        if _M2_BYTES in body:
            payload: dict[str, Any] = json.loads(body)
            to = str(payload.get("to", ""))
            text = str((payload.get("text") or {}).get("body", ""))
            if text.startswith(M2_MARKER):
                self.m2.setdefault(to, now)
        wamid = f"wamid.bench.{self.sent}"
        return (
            b'{"messaging_product":"whatsapp","contacts":[{"input":"%s","wa_id":"%s"}],'
            b'"messages":[{"id":"%s"}]}' % (to.encode(), to.encode(), wamid.encode())
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                status, payload = self.route(method, path, body)
                reason = b"OK" if status == 200 else b"Not Found"
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, reason, len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def serve(port: int) -> None:
    graph = FakeGraph()
    server = await asyncio.start_server(graph.handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else 8765
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(port))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
