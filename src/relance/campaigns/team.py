"""The senders one dispatch serves: who has something due, each one's limiter and provider."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from relance.campaigns import claims
from relance.config import Settings
from relance.db import session_scope
from relance.pacing.limiter import AnyLimiter
from relance.providers.base import Provider
from relance.providers.registry import get_provider
from relance.senders import service
from relance.senders.identity import SenderInfo, pacing_key, sender_settings
from relance.senders.pace import limiter_for, rules_for

log = logging.getLogger(__name__)


class Team:
    """``provider`` and ``limiter`` are the default sender's; the others' are made once per
    dispatch (a limiter follows its sender's health: re-made when its rules change)."""

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        limiter: AnyLimiter,
        providers: Callable[[SenderInfo], Provider] | None = None,
    ) -> None:
        self.settings = settings
        self._provider = provider
        self._limiter = limiter
        self._providers = providers
        self._limiters: dict[str, AnyLimiter] = {}
        self._resting: dict[int, float] = {}

    def rest(self, sender: SenderInfo, until: float) -> None:
        """The sender's limiter said wait: claim nothing more of it until then."""
        self._resting[sender.id] = until

    def resting_until(self, sender: SenderInfo) -> float | None:
        until = self._resting.get(sender.id)
        return until if until is not None and until > time.time() else None

    def due(
        self,
        message_ids: Sequence[int] | None,
        recipient_ids: Sequence[int] | None,
        now: datetime,
    ) -> list[SenderInfo]:
        """Every sender with something due, read afresh (a webhook may have slowed one)."""
        with session_scope(self.settings) as session:
            stored = claims.due_senders(session, now, message_ids, recipient_ids)
            if not stored:
                return []
            infos = service.infos(session, self.settings)
        default = next(s for s in infos.values() if s.is_default)
        out = []
        for sender_id in sorted(stored, key=lambda s: -1 if s is None else s):
            sender = default if sender_id is None else infos.get(sender_id)
            if sender is None:
                log.error("messages of an unknown sender", extra={"sender_id": sender_id})
                continue
            out.append(sender)
        return out

    def refreshed(self, sender: SenderInfo) -> SenderInfo:
        """The sender as it is now (its status and limits may have changed)."""
        with session_scope(self.settings) as session:
            return service.infos(session, self.settings).get(sender.id, sender)

    def limiter(self, sender: SenderInfo) -> AnyLimiter:
        rules = rules_for(sender, self.settings)
        key = f"{pacing_key(sender, self.settings)}|{rules}"
        if key not in self._limiters:
            self._limiters[key] = limiter_for(self._limiter, sender, self.settings)
        return self._limiters[key]

    def provider(self, sender: SenderInfo) -> Provider:
        if sender.is_default:
            return self._provider
        if self._providers is not None:
            return self._providers(sender)
        return get_provider(sender_settings(sender, self.settings))
