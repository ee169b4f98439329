"""Three numbers, two dispatcher processes, PostgreSQL and Redis, the fake Cloud API's send
log (a process of its own): each number keeps its own pace on the wire, every Message 2
leaves from its contact's Message 1 number, and a quality webhook slows one number while the
others keep their pace."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from relance.campaigns.answers import record_interaction
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.campaigns.queries import get_campaign
from relance.config import Settings, load_settings
from relance.db import session_scope
from relance.fakes.graph import ACCEPTED_PATH
from relance.models import Contact, Recipient, campaign_senders, utcnow
from relance.processes import Process, free_port, start_process, wait_for_port, wait_until
from relance.providers.events import SenderEvent
from relance.senders import service
from relance.senders.schemas import SenderCreate
from relance.senders.signals import apply_sender_event
from tests.support.engine import make_campaign, seed_contacts

DELAY = 0.3  # SEND_DELAY_SECONDS, per number
PER_SENDER = 8
NUMBERS = ("100100", "200200", "300300")  # phone_number_ids: the default (env) and two more
SLOWED = "200200"
FRACTION = 0.5  # QUALITY_SLOW_FRACTION
ROOT = Path(__file__).parents[2]
Send = tuple[float, str, str, int]  # arrival time, to, number, our message id


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_process(
        "graph", [sys.executable, "-m", "relance.fakes.graph", str(port)], {}, tmp_path
    )
    try:
        wait_for_port("127.0.0.1", port, 30, watch=[proc])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture
def env(pg_settings: Settings, redis_url: str, graph: str) -> dict[str, str]:
    return {
        "DATABASE_URL": pg_settings.database_url,
        "RELANCE_DATA_DIR": str(pg_settings.data_dir),
        "BROKER_URL": "memory://",
        "REDIS_URL": redis_url,
        "RELANCE_PROVIDER": "meta",
        "META_GRAPH_URL": graph,
        "META_PHONE_NUMBER_ID": NUMBERS[0],
        "META_ACCESS_TOKEN": "token",
        "META_APP_SECRET": "a-real-secret",
        "META_VERIFY_TOKEN": "verify",
        "SEND_DELAY_SECONDS": str(DELAY),
        "BATCH_PAUSE_SECONDS": "0",
        "DAILY_QUOTA": "0",
        "MAX_SENDS_PER_SECOND": "0",
        "QUALITY_SLOW_FRACTION": str(FRACTION),
    }


def _settings(env: dict[str, str]) -> Settings:
    return load_settings(
        **{k.lower(): v for k, v in env.items() if k != "RELANCE_PROVIDER"},
        provider=env["RELANCE_PROVIDER"],
        data_dir=env["RELANCE_DATA_DIR"],
    )


def _campaign(settings: Settings) -> int:
    with session_scope(settings) as session:
        ids = [service.ensure_default(session, settings).id]
        for k, number in enumerate(NUMBERS[1:]):
            data = SenderCreate(
                name=f"n{k}", provider="meta", phone_number_id=number, display_number=number
            )
            ids.append(service.create_sender(session, settings, data).id)
        campaign_id = make_campaign(session, [seed_contacts(session, 3 * PER_SENDER)])
        session.execute(
            campaign_senders.insert(),
            [{"campaign_id": campaign_id, "sender_id": s, "weight": 1} for s in ids],
        )
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    return campaign_id


def _workers(env: dict[str, str], log_dir: Path, n: int = 2) -> list[Process]:
    """Two dispatchers, each a process of its own, as two Celery workers would run them."""
    return [
        start_process(
            f"dispatcher{k}",
            [sys.executable, "-m", "tests.support.dispatcher", "60"],
            env,
            log_dir,
            cwd=ROOT,
        )
        for k in range(n)
    ]


def _log(graph: str) -> list[Send]:
    return [tuple(s) for s in httpx.get(graph + ACCEPTED_PATH, timeout=10).json()]


def _finish(workers: list[Process]) -> None:
    wait_until(lambda: not any(w.alive() for w in workers), 120, "dispatchers done")
    for worker in workers:
        assert worker.returncode == 0, worker.log_tail()


def _gaps(sends: list[Send]) -> list[float]:
    return [b[0] - a[0] for a, b in itertools.pairwise(sorted(sends))]


def test_three_numbers_keep_their_own_pace_and_message_2_leaves_from_message_1s_number(
    env: dict[str, str], graph: str, tmp_path: Path
) -> None:
    settings = _settings(env)
    campaign_id = _campaign(settings)
    workers = _workers(env, tmp_path)
    # Meta flags one number once its first sends are out: it slows, the others do not.
    wait_until(lambda: sum(1 for s in _log(graph) if s[2] == SLOWED) >= 2, 60, "first sends")
    with session_scope(settings) as session:
        flag = SenderEvent("q1", "quality", "FLAGGED", utcnow(), display_phone_number=SLOWED)
        apply_sender_event(session, settings, flag)
    flagged_at = utcnow().timestamp()
    _finish(workers)

    sends = _log(graph)
    first = {to: number for _, to, number, _ in sends}
    assert len(sends) == len(first) == 3 * PER_SENDER  # each contact once
    by_number = {n: [s for s in sends if s[2] == n] for n in NUMBERS}
    assert {n: len(s) for n, s in by_number.items()} == dict.fromkeys(NUMBERS, PER_SENDER)
    for number in NUMBERS:
        # The number holds its pace: on average, and each gap give or take the jitter of a
        # loaded machine (a thread woken late for one slot, on time for the next). The
        # dispatchers open their connections first (tests/support/dispatcher.py).
        gaps = _gaps(by_number[number])
        assert sum(gaps) / len(gaps) >= DELAY * 0.97, (number, gaps)
        assert min(gaps) >= DELAY * 0.6, (number, gaps)
    # Side by side: the three numbers sent at once, not one after the other.
    starts = [min(s[0] for s in group) for group in by_number.values()]
    ends = [max(s[0] for s in group) for group in by_number.values()]
    assert max(starts) < min(ends)
    # The flagged number at its slowed pace once the flag was read (a slot granted at the
    # old pace may still go); the others at theirs.
    late = _gaps([s for s in by_number[SLOWED] if s[0] > flagged_at + 2 * DELAY])
    assert len(late) >= 2 and min(late) >= DELAY / FRACTION * 0.8, late  # 0.6 s, not 0.3
    for number in set(NUMBERS) - {SLOWED}:
        after = _gaps([s for s in by_number[number] if s[0] > flagged_at])
        assert not after or max(after) < DELAY / FRACTION, (number, after)

    # Every contact answers, at the number it was written from: each Message 2 leaves from
    # the number its Message 1 left from.
    with session_scope(settings) as session:
        phones = session.scalars(select(Contact.phone).join(Recipient)).all()
        for contact_phone in phones:
            to_ref = first[contact_phone.lstrip("+")]
            record_interaction(
                session, settings, RecordingFollowups(), contact_phone, to_ref=to_ref
            )
    _finish(_workers(env, tmp_path))
    answers = _log(graph)[3 * PER_SENDER :]
    assert len(answers) == 3 * PER_SENDER
    assert all(number == first[to] for _, to, number, _ in answers)
    with session_scope(settings) as session:
        assert get_campaign(session, campaign_id).status == "completed"
