"""Handing claimed messages to a provider: each once, its errors as outcomes, timed and
counted for /metrics by provider, sender, kind and outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from relance.campaigns.outcomes import SendOutcome
from relance.metrics.recorder import PROVIDER_LATENCY, SENDS, recorder
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    RetryableError,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused(OutboundMessage):
    """A claimed message that must not reach the provider: it fails for good with ``reason``."""

    code: str = "refused"
    reason: str = ""


def send_all(provider: Provider, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
    """Hand each message to the provider once; never raise (errors become outcomes).

    A refused message is not handed over: it becomes its permanent failure."""

    def one(message: OutboundMessage) -> SendOutcome:
        if isinstance(message, Refused):
            error = PermanentError(message.code, message.reason)
            return SendOutcome(message.message_id, error=error)
        started = time.perf_counter()
        try:
            result = provider.send(message)
            return SendOutcome(message.message_id, provider_message_id=result.provider_message_id)
        except ProviderError as exc:
            return SendOutcome(message.message_id, error=exc)
        except Exception as exc:  # a bug or a network oddity must not lose the claim
            log.exception("provider send crashed", extra={"message_id": message.message_id})
            return SendOutcome(message.message_id, error=RetryableError("exception", repr(exc)))
        finally:
            elapsed = time.perf_counter() - started
            recorder.observe(PROVIDER_LATENCY, elapsed, provider=provider.name)

    if len(messages) <= 1:
        return [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=min(16, len(messages))) as pool:
        return list(pool.map(one, messages))


def send_outcome_label(refused: bool, outcome: SendOutcome) -> str:
    """sent, refused (never handed over), failed, rate_limited, retry (a transient error)."""
    if refused:
        return "refused"
    if outcome.error is None:
        return "sent"
    if isinstance(outcome.error, PermanentError):
        return "failed"
    return "rate_limited" if isinstance(outcome.error, RateLimited) else "retry"


def count_sends(
    provider: str,
    sender: str,
    sends: Sequence[tuple[str, bool]],
    outcomes: Sequence[SendOutcome],
) -> None:
    """``sends``: each message's kind and whether it was refused before the provider."""
    for (kind, refused), outcome in zip(sends, outcomes, strict=True):
        recorder.inc(
            SENDS,
            provider=provider,
            sender=sender,
            kind=kind,
            outcome=send_outcome_label(refused, outcome),
        )
