"""A real ``relance api`` process on SQLite and PostgreSQL: huge bodies, read-your-writes.

Memory is read from the server's own /proc entry: its peak RSS is reset before the attacks and
read after them, so the figure is what refusing the bodies cost, whatever start-up cost before.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relance.processes import Process, Processes, free_port, wait_for_http
from tests.support.stack import cli_api_key, relance_command

MB = 1024 * 1024
HUGE = 300 * MB
RSS_GROWTH_LIMIT_MB = 50


@dataclass
class Server:
    process: Process
    port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    database_url = (
        f"sqlite:///{tmp_path / 'relance.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    port = free_port()
    env = {
        "DATABASE_URL": database_url,
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
        "BROKER_URL": "memory://",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    }
    key = cli_api_key(env, tmp_path)  # migrates the SQLite file too
    processes = Processes(tmp_path / "logs")
    try:
        api = processes.start("api", relance_command("api", "--port", str(port)), env, cwd=tmp_path)
        wait_for_http(f"http://127.0.0.1:{port}/health", 60, watch=[api])
        yield Server(api, port, key)
    finally:
        processes.stop_all()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def raw_post(
    port: int, path: str, total: int, *, chunked: bool, key: str | None = None
) -> int | None:
    """POST ``total`` bytes the way an attacker would; the status, or None if cut off unread.

    The body is sent until the server answers or closes: nothing waits for the whole of it.
    """
    headers = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    headers.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    if key:
        headers.append(f"Authorization: Bearer {key}")
    piece = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        sent = 0
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(frame)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            return None
    return int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else None


def test_refusing_300_mb_bodies_costs_the_server_little_memory(server: Server) -> None:
    pid = server.process.pid
    before_kb = _status_kb(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak RSS to the current one
    p, key = server.port, server.key
    outcomes = {
        "no key, declared": raw_post(p, "/api/contacts", HUGE, chunked=False),
        "no key, chunked import": raw_post(p, "/api/contacts/import", HUGE, chunked=True),
        "webhook, declared": raw_post(p, "/webhooks/simulator", HUGE, chunked=False),
        "webhook, chunked": raw_post(p, "/webhooks/simulator", HUGE, chunked=True),
        "key, declared import": raw_post(p, "/api/contacts/import", HUGE, chunked=False, key=key),
        "key, chunked": raw_post(p, "/api/contacts", HUGE, chunked=True, key=key),
    }
    growth_mb = (_status_kb(pid, "VmHWM") - before_kb) / 1024
    server.process.check_alive()
    expected: dict[str, set[int | None]] = {
        "no key, declared": {401},
        "no key, chunked import": {401},
        "webhook, declared": {413},
        # A body cut short: the 413 is sent, but the close may reach the client first.
        "webhook, chunked": {413, None},
        "key, declared import": {413},
        "key, chunked": {413, None},
    }
    for name, status in outcomes.items():
        assert status in expected[name], (name, status)
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"RSS grew by {growth_mb:.1f} MB refusing 300 MB bodies"
    # And the server still serves.
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def test_a_write_is_readable_as_soon_as_its_answer_arrives(server: Server) -> None:
    """Read-your-writes: the transaction commits before the response leaves (300 times)."""
    missing = []
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=30
    ) as client:
        for i in range(300):
            created = client.post("/api/categories", json={"name": f"c{i}"})
            assert created.status_code == 201, created.text
            category_id = created.json()["id"]
            read = client.get(f"/api/categories/{category_id}")
            if read.status_code != 200:
                missing.append((i, read.status_code))
    assert missing == []


def _get_in_pieces(port: int, target: str, key: str) -> tuple[int, bytes]:
    """GET with the head sent in 1,400-byte pieces, as it arrives over a real network.

    h11 applies its head limit to what it holds before the head is complete: sent at once on
    loopback a long head arrives whole and the limit never shows.
    """
    head = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(head), 1400):
            sock.sendall(head[start : start + 1400])
            time.sleep(0.002)  # the network's pace, not a wait for an event
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status = int(answer.split()[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_two_lists_of_500_ids_fit_and_501_is_a_documented_422(server: Server) -> None:
    def target(categories: int, contacts: int) -> str:
        query = "&".join(
            [f"category_ids={2**31 - 1}"] * categories + [f"contact_ids={2**31 - 1}"] * contacts
        )
        return f"/api/audience/count?{query}"

    status, body = _get_in_pieces(server.port, target(500, 500), server.key)
    assert status == 200, body[:200]
    assert json.loads(body)["total"] == 0
    status, body = _get_in_pieces(server.port, target(501, 500), server.key)
    assert status == 422, body[:200]
    assert json.loads(body)["detail"][0]["field"] == "category_ids"
