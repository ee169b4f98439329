"""Fixtures of the integration tests: an API client, recorded follow-ups, a fake HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.deps import get_followups
from tests.support.api import api_client
from tests.support.http_server import FakeHttpServer


@pytest.fixture
def followups() -> RecordingFollowups:
    """What the API would have queued (a Message 2 to send, a status check), recorded."""
    return RecordingFollowups()


@pytest.fixture
def client(settings: Settings, followups: RecordingFollowups) -> Iterator[TestClient]:
    """A TestClient with a fresh API key; its follow-ups go to ``followups``."""
    with api_client(settings) as c:
        c.app.dependency_overrides[get_followups] = lambda: followups  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="module")
def running_server() -> Iterator[FakeHttpServer]:
    with FakeHttpServer() as fake:
        yield fake


@pytest.fixture
def server(running_server: FakeHttpServer) -> FakeHttpServer:
    """The module's fake provider API, its recorded requests and queued answers forgotten."""
    running_server.reset()
    return running_server
