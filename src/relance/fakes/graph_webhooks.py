"""The webhook bodies the fake Cloud API posts: a send's status, a contact's reply, several
bodies merged into one as Meta batches them."""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

from relance.providers import meta_errors
from relance.providers.meta_webhooks import message_payload, status_payload


class Accepted(NamedTuple):
    """One send the fake accepted (a tuple: cheap at the bench's rates)."""

    at: float
    to: str
    our_id: int  # biz_opaque_callback_data: relance's message id
    wamid: str
    text: str
    template: dict[str, Any] | None = None  # the Cloud API ``template`` object, if one
    number: str = ""  # the phone_number_id it was sent from (``/{version}/{number}/messages``)


def status_body(accepted: Accepted, failed_with: int | None) -> bytes:
    """The status webhook Meta posts about an accepted send: ``sent``, or ``failed`` with the
    error Meta found afterwards."""
    status: dict[str, Any] = {
        "id": accepted.wamid,
        "status": "sent" if failed_with is None else "failed",
        "timestamp": str(int(accepted.at)),
        "recipient_id": accepted.to,
        "biz_opaque_callback_data": str(accepted.our_id),
    }
    if failed_with is not None:
        status["errors"] = [meta_errors.status_error(failed_with)]
    return json.dumps(status_payload([status], accepted.number or "simulator")).encode()


def merged(bodies: list[bytes]) -> bytes:
    """Several webhook bodies as one: their entries in order, in one envelope."""
    payloads = [json.loads(body) for body in bodies]
    merged = payloads[0]
    merged["entry"] = [entry for payload in payloads for entry in payload["entry"]]
    return json.dumps(merged).encode()


def reply_body(accepted: Accepted, text: str) -> bytes:
    """The contact answers the send: a text message quoting it (``context.id``)."""
    message = {
        "from": accepted.to,
        "id": f"wamid.REPLY.{accepted.wamid}",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
        "context": {"from": "15550000000", "id": accepted.wamid},
    }
    return json.dumps(message_payload([message], accepted.number or "simulator")).encode()
