"""What a provider's failure code means beyond "this message did not go" (``FailureEffect``).

A failure's code comes from the send's answer or from a ``failed`` status webhook; the same
code means the same thing either way. The simulator speaks the Cloud API's codes.
"""

from __future__ import annotations

from relance.providers import meta_errors, twilio
from relance.providers.base import FailureEffect

EFFECTS: dict[str, dict[str, FailureEffect]] = {
    "meta": meta_errors.FAILURE_EFFECTS,
    "simulator": meta_errors.FAILURE_EFFECTS,
    "twilio": twilio.FAILURE_EFFECTS,
}
# Every provider's codes for a marketing message the provider held back for this contact
# (a per-user limit): the recipients failed by one of them are ``limited``.
LIMITED_CODES: frozenset[str] = frozenset(
    code for table in EFFECTS.values() for code, effect in table.items() if effect == "limited"
)


def effect_of(provider: str, code: str | None) -> FailureEffect | None:
    """What ``code`` from ``provider`` means, if more than a failure."""
    if code is None:
        return None
    return EFFECTS.get(provider, {}).get(code.strip())
