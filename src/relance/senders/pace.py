"""Each sender's pace: its own limiter key and rules, from its throughput and its health."""

from __future__ import annotations

from dataclasses import replace

from relance.config import Settings
from relance.pacing.domain import PacingRules
from relance.pacing.limiter import AnyLimiter, rules_from
from relance.senders.identity import SenderInfo, pacing_key


def rules_for(sender: SenderInfo, settings: Settings) -> PacingRules:
    """The settings' pacing, at the sender's throughput; a slowed sender (quality red or
    flagged) sends at ``QUALITY_SLOW_FRACTION`` of its pace."""
    rules = rules_from(settings)
    if sender.throughput_per_second:
        rules = replace(rules, max_per_second=sender.throughput_per_second)
    if sender.status == "slowed":
        fraction = settings.quality_slow_fraction
        rules = replace(
            rules,
            send_delay=rules.send_delay / fraction,
            max_per_second=rules.max_per_second * fraction,
        )
    return rules


def limiter_for(base: AnyLimiter, sender: SenderInfo, settings: Settings) -> AnyLimiter:
    """A limiter on the same store as ``base`` for this sender (the default one is ``base``)."""
    if sender.is_default and sender.throughput_per_second is None and sender.status == "active":
        return base
    return base.for_sender(pacing_key(sender, settings), rules_for(sender, settings))
