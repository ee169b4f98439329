"""Senders as data: /api/senders, ``relance sender``, the default sender from the environment."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from relance.accounts.roles import Role
from relance.cli import cli
from relance.config import Settings
from relance.db import session_scope
from relance.models import AuditEvent
from tests.support.api import api_client, new_api_key

runner = CliRunner()


def test_the_default_sender_is_the_environments_and_cannot_be_deleted(client: TestClient) -> None:
    r = client.get("/api/senders")
    assert r.status_code == 200, r.text
    (default,) = r.json()["items"]
    assert default["is_default"] and default["name"] == "default"
    assert default["provider"] == "simulator" and default["status"] == "active"
    assert default["limit_used"] == 0
    assert client.delete(f"/api/senders/{default['id']}").status_code == 409
    r = client.patch(f"/api/senders/{default['id']}", json={"name": "other"})
    assert r.status_code == 422 and "default" in r.text


def test_create_edit_pause_delete_a_sender_audited(client: TestClient, settings: Settings) -> None:
    r = client.post(
        "/api/senders",
        json={"name": "brand B", "provider": "simulator", "throughput_per_second": 20},
    )
    assert r.status_code == 201, r.text
    sender = r.json()
    assert sender["throughput_per_second"] == 20 and not sender["is_default"]
    assert "token" not in r.text and "secret" not in r.text
    assert (
        client.post("/api/senders", json={"name": "brand B", "provider": "simulator"}).status_code
        == 409
    )
    r = client.post("/api/senders", json={"name": "x", "provider": "meta", "phone_number_id": "1"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "provider"
    r = client.patch(
        f"/api/senders/{sender['id']}", json={"status": "paused", "messaging_limit": 250}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paused" and r.json()["paused_reason"] == "paused by a person"
    assert r.json()["messaging_limit"] == 250
    r = client.patch(f"/api/senders/{sender['id']}", json={"clear": ["messaging_limit"]})
    assert r.json()["messaging_limit"] is None
    assert client.get(f"/api/senders/{sender['id']}").json()["name"] == "brand B"
    assert client.delete(f"/api/senders/{sender['id']}").status_code == 204
    assert client.get(f"/api/senders/{sender['id']}").status_code == 404
    with session_scope(settings) as session:
        actions = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["sender.create", "sender.update", "sender.update", "sender.delete"]


def test_a_viewer_reads_senders_but_cannot_change_them(settings: Settings) -> None:
    with api_client(settings) as viewer:
        viewer.headers["Authorization"] = f"Bearer {new_api_key(settings, 'v', Role.VIEWER)}"
        assert viewer.get("/api/senders").status_code == 200
        r = viewer.post("/api/senders", json={"name": "n", "provider": "simulator"})
        assert r.status_code == 403 and "'manage_senders'" in r.json()["detail"]


def test_relance_sender_add_list_pause_remove(settings: Settings) -> None:
    result = runner.invoke(cli, ["sender", "add", "--name", "shop", "--throughput", "10"])
    assert result.exit_code == 0, result.stderr
    sender_id = result.stdout.strip().splitlines()[-1]
    result = runner.invoke(cli, ["sender", "pause", sender_id])
    assert result.exit_code == 0, result.stderr
    listed = runner.invoke(cli, ["sender", "list"]).stdout
    assert "default (default)" in listed and "shop" in listed and "paused" in listed
    assert runner.invoke(cli, ["sender", "remove", sender_id]).exit_code == 0
    assert "shop" not in runner.invoke(cli, ["sender", "list"]).stdout
    again = runner.invoke(cli, ["sender", "remove", sender_id])
    assert again.exit_code == 1 and "not found" in again.stderr


def test_a_campaign_names_its_senders_and_its_stats_show_each_numbers_share(
    client: TestClient, settings: Settings
) -> None:
    sender = client.post("/api/senders", json={"name": "b", "provider": "simulator"}).json()
    client.post("/api/contacts", json={"phone": "+33612345678", "first_name": "Ada"})
    contact = client.get("/api/contacts").json()["items"][0]["id"]
    body = {"name": "c", "message_1": "Hi", "contact_ids": [contact]}
    r = client.post("/api/campaigns", json={**body, "senders": [{"sender_id": 999}]})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "senders"
    twice = [{"sender_id": sender["id"]}, {"sender_id": sender["id"]}]
    assert client.post("/api/campaigns", json={**body, "senders": twice}).status_code == 422
    shares = [{"sender_id": sender["id"], "weight": 3}]
    campaign = client.post("/api/campaigns", json={**body, "senders": shares}).json()
    assert campaign["senders"] == shares
    assert client.delete(f"/api/senders/{sender['id']}").status_code == 409  # in use
    r = client.patch(f"/api/campaigns/{campaign['id']}", json={"senders": []})
    assert r.json()["senders"] == []  # back to the default sender
    client.patch(f"/api/campaigns/{campaign['id']}", json={"senders": shares})
    assert client.post(f"/api/campaigns/{campaign['id']}/launch").status_code == 200
    stats = client.get(f"/api/campaigns/{campaign['id']}/stats").json()
    assert [(s["sender_id"], s["recipients"]) for s in stats["senders"]] == [(sender["id"], 1)]
    assert stats["sender_waits"] == []
    client.patch(f"/api/senders/{sender['id']}", json={"status": "paused"})
    blocking = client.get(f"/api/campaigns/{campaign['id']}/blocking").json()
    assert blocking["sender_waits"] == ["sender b Message 1s paused: paused by a person"]
