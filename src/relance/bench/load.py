"""A load generator of HTTP/1.1 POSTs over keep-alive connections, light enough to leave the
machine's cores to the server it measures.

Each of ``concurrency`` connections sends its next request as soon as the previous answer is
read (a closed loop, like Meta's webhook senders, which wait for each answer). Requests are
built before the clock starts; answers are parsed only as far as the status and the length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of the 200 answers
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def request_bytes(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _connection(
    host: str, port: int, requests: list[bytes], next_index: list[int], result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while next_index[0] < len(requests):
            request = requests[next_index[0]]
            next_index[0] += 1
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            status = int(status_line.split()[1]) if status_line else 0
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.latencies.append(time.perf_counter() - started)
            if not status_line:
                return  # the server closed the connection
    finally:
        writer.close()


async def _run(host: str, port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    result = LoadResult()
    next_index = [0]  # shared: one event loop, no lock needed
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(host, port, requests, next_index, result) for _ in range(concurrency))
    )
    result.seconds = time.perf_counter() - started
    return result


def run(host: str, port: int, requests: Sequence[bytes], concurrency: int) -> LoadResult:
    """Send every request once, ``concurrency`` at a time; the answers' times and statuses."""
    return asyncio.run(_run(host, port, list(requests), concurrency))
