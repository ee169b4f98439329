"""A dispatcher process for tests: ``python -m tests.support.dispatcher BUDGET`` runs the
dispatcher with the environment's settings until nothing is due (or BUDGET seconds), as one
worker process would, with its own interpreter (no lock shared with the test's threads)."""

from __future__ import annotations

import sys

from relance.campaigns.dispatch import dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings, load_settings
from relance.db import session_scope
from relance.fakes.graph import STATS_PATH
from relance.pacing.limiter import make_limiter
from relance.providers.registry import get_provider
from relance.senders import service
from relance.senders.identity import sender_settings


def _warm(settings: Settings) -> None:
    """Open each number's connection first, as a worker that has been running has: a fresh
    process's first send to a number pays the connection and may arrive late on its slot."""
    with session_scope(settings) as session:
        senders = list(service.infos(session, settings).values())
    for sender in senders:
        provider = get_provider(sender_settings(sender, settings))
        client = getattr(provider, "_client", None)
        if client is not None:
            client.get(settings.meta_graph_url.rstrip("/") + STATS_PATH)


def main(budget: float) -> int:
    settings = load_settings()
    _warm(settings)
    report = dispatch(
        settings,
        get_provider(settings),
        make_limiter(settings),
        RecordingFollowups(),
        budget_seconds=budget,
    )
    print(f"sent={report.sent} failed={report.failed} more={report.more}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0))
