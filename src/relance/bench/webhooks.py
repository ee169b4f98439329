"""Webhook ingest, and the signed Cloud API bodies the latency figures post too.

Statuses go to a running ``relance api`` exactly as Meta sends them: batches of 100 statuses
in one ``POST /webhooks/meta`` signed with ``X-Hub-Signature-256``, several POSTs in flight.
Each message gets ``delivered`` then ``read``. The figure counts events accepted and applied:
the clock stops once the inbox is applied (inline, the endpoint applies before it answers);
the database is then checked: every message must be ``read`` and every event stored with its
outcome, or events were lost.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from queue import Empty, Queue
from typing import Any

import httpx
from sqlalchemy import func, select

from relance.bench import cpu
from relance.bench.env import APP_SECRET, PHONE_NUMBER_ID, BenchEnv
from relance.bench.errors import BenchError
from relance.bench.report import Figure, Report
from relance.db import session_scope
from relance.models import Contact, InboundEvent, Message, Recipient, WebhookInbox
from relance.processes import wait_until
from relance.providers.meta_webhooks import message_payload, sign, status_payload

WEBHOOK_TARGET = 2000.0
BATCH = 100
CONCURRENCY = 4


def signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(body, APP_SECRET),
    }


def reply_body(from_digits: str, context_wamid: str, n: int) -> tuple[bytes, dict[str, str]]:
    """A contact's text answer quoting our Message 1, as the Cloud API posts it."""
    message = {
        "from": from_digits,
        "id": f"wamid.bench.reply.{n}.{time.time_ns()}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "Oui, avec plaisir"},
        "context": {"from": "15550000000", "id": context_wamid},
    }
    return signed(message_payload([message], PHONE_NUMBER_ID))


def sent_messages(env: BenchEnv, campaign_id: int, limit: int | None = None) -> list[Any]:
    """(message id, wamid, phone) of the campaign's sent Message 1s, in id order."""
    with session_scope(env.settings) as session:
        query = (
            select(Message.id, Message.provider_message_id, Contact.phone)
            .join(Recipient, Recipient.id == Message.recipient_id)
            .join(Contact, Contact.id == Recipient.contact_id)
            .where(
                Message.campaign_id == campaign_id,
                Message.kind == "message_1",
                Message.provider_message_id.is_not(None),
            )
            .order_by(Message.id)
        )
        if limit is not None:
            query = query.limit(limit)
        return list(session.execute(query).all())


def _bodies(rows: Sequence[Any]) -> list[tuple[int, bytes, dict[str, str]]]:
    out = []
    stamp = str(int(time.time()))
    for status in ("delivered", "read"):
        for i in range(0, len(rows), BATCH):
            statuses = [
                {
                    "id": wamid,
                    "status": status,
                    "timestamp": stamp,
                    "recipient_id": phone.lstrip("+"),
                    "biz_opaque_callback_data": str(message_id),
                }
                for message_id, wamid, phone in rows[i : i + BATCH]
            ]
            body, headers = signed(status_payload(statuses, PHONE_NUMBER_ID))
            out.append((len(statuses), body, headers))
    return out


def _post_all(url: str, bodies: list[tuple[int, bytes, dict[str, str]]]) -> dict[str, int]:
    queue: Queue[tuple[int, bytes, dict[str, str]]] = Queue()
    for item in bodies:
        queue.put(item)
    tally = {"accepted": 0, "applied": 0, "retried_posts": 0, "failed_posts": 0}
    lock = threading.Lock()

    def poster() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                try:
                    _, body, headers = queue.get_nowait()
                except Empty:
                    return
                for attempt in range(3):  # Meta retries a webhook that did not get a 200
                    response = client.post(url, content=body, headers=headers)
                    if response.status_code == 200:
                        answer = response.json()
                        with lock:
                            tally["accepted"] += int(answer.get("received", 0))
                            tally["applied"] += int(answer.get("applied", 0))
                        break
                    with lock:
                        tally["retried_posts" if attempt < 2 else "failed_posts"] += 1

    threads = [threading.Thread(target=poster) for _ in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally


def _unapplied(env: BenchEnv) -> int:
    with session_scope(env.settings) as session:
        return int(
            session.scalar(select(func.count()).where(WebhookInbox.applied_at.is_(None))) or 0
        )


def webhook_ingest(env: BenchEnv, report: Report, api_url: str, rows: Sequence[Any]) -> None:
    bodies = _bodies(rows)
    events = sum(count for count, _, _ in bodies)
    with session_scope(env.settings) as session:
        stored_before = session.scalar(select(func.count()).where(InboundEvent.kind == "status"))
    cpu_before = cpu.snapshot(env)
    start = time.perf_counter()
    tally = _post_all(f"{api_url}/webhooks/meta", bodies)
    # With the inbox the answers come before the apply: the clock stops once it is applied.
    wait_until(lambda: _unapplied(env) == 0, 300, "the inbox applied", error=BenchError)
    elapsed = time.perf_counter() - start
    cpu_used = cpu.utilisation(cpu_before, cpu.snapshot(env))
    ids = [message_id for message_id, _, _ in rows]
    with session_scope(env.settings) as session:
        read = session.scalar(
            select(func.count()).where(
                Message.id.in_(ids),
                Message.status == "read",
                Message.delivered_at.is_not(None),
            )
        )
        stored = session.scalar(
            select(func.count()).where(
                InboundEvent.kind == "status", InboundEvent.outcome.is_not(None)
            )
        )
    stored = int(stored or 0) - int(stored_before or 0)
    lost = max(events - stored, len(rows) - int(read or 0))
    value = events / elapsed
    report.add(
        Figure(
            "webhook_events_per_s",
            value,
            "events/s",
            report.limits["update_rows_per_s"],
            "raw batched UPDATE rows/s (100 rows per transaction)",
            ">= 2,000 events/s, none lost",
            value >= WEBHOOK_TARGET and lost == 0,
        ),
        events=events,
        posts=len(bodies),
        statuses_per_post=BATCH,
        concurrent_posts=CONCURRENCY,
        seconds=round(elapsed, 3),
        messages_read=read,
        events_stored_and_applied=stored,
        lost=lost,
        ingest_mode=env.settings.ingest_mode,
        **tally,
        cpu_percent_of_one_core=cpu_used,
    )
