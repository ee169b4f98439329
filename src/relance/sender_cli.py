"""``relance sender``: the numbers relance sends from, managed from the operator's shell.

Each change is in the audit log as done by ``cli``, like ``relance user``."""

from __future__ import annotations

from typing import Annotated

import typer

from relance.account_cli import operator, unit_of_work
from relance.cli_settings import settings_for

sender_cli = typer.Typer(no_args_is_help=True, help="Manage the senders (WhatsApp numbers).")
Ref = Annotated[str | None, typer.Option()]


@sender_cli.command("add")
def sender_add(
    name: Annotated[str, typer.Option(help="a name people recognise")],
    phone_number_id: Annotated[str | None, typer.Option(help="Cloud API phone_number_id")] = None,
    twilio_from: Annotated[str | None, typer.Option(help="Twilio From, whatsapp:+...")] = None,
    wassenger_device: Annotated[str | None, typer.Option(help="Wassenger device id")] = None,
    display_number: Annotated[str | None, typer.Option(help="the number as people read it")] = None,
    throughput: Annotated[float | None, typer.Option(help="messages/s (Meta: 80 or 1000)")] = None,
    messaging_limit: Annotated[int | None, typer.Option(help="unique users per 24 h")] = None,
    portfolio: Annotated[str | None, typer.Option(help="Meta business portfolio")] = None,
) -> None:
    """Add a sender of the configured provider (RELANCE_PROVIDER); prints its id."""
    from relance.accounts import audit
    from relance.senders import service
    from relance.senders.schemas import SenderCreate

    settings = settings_for("sender add")
    data = SenderCreate.model_validate(
        {
            "name": name,
            "provider": settings.provider,
            "phone_number_id": phone_number_id,
            "twilio_from": twilio_from,
            "wassenger_device": wassenger_device,
            "display_number": display_number,
            "throughput_per_second": throughput,
            "messaging_limit": messaging_limit,
            "portfolio": portfolio,
        }
    )
    with unit_of_work(settings) as session:
        row = service.create_sender(session, settings, data)
        audit.record(session, operator(session), "sender.create", f"sender:{row.id}", name=name)
        sender_id = row.id
    typer.echo(f"sender {name!r} added", err=True)
    typer.echo(sender_id)


@sender_cli.command("list")
def sender_list() -> None:
    """Every sender: id, name, provider, number, status, quality, limit used / limit."""
    from relance.senders import service, usage
    from relance.senders.identity import info

    settings = settings_for("sender list")
    with unit_of_work(settings) as session:
        rows = service.list_senders(session, settings)
        used = usage.limit_used(session)
        for row in rows:
            one = info(row, settings)
            limit = row.messaging_limit or settings.messaging_limit or "none"
            fields = [
                row.id,
                row.name + (" (default)" if row.is_default else ""),
                one.provider,
                one.ref or "-",
                row.status + (f": {row.paused_reason}" if row.paused_reason else ""),
                row.quality_rating,
                f"{used.get(row.id, 0)}/{limit}",
            ]
            typer.echo("\t".join(str(f) for f in fields))


def _set(ident: int, status: str, action: str) -> None:
    from relance.accounts import audit
    from relance.senders import service
    from relance.senders.schemas import SenderUpdate

    settings = settings_for(f"sender {action}")
    with unit_of_work(settings) as session:
        row = service.get_sender(session, ident)
        changes = service.update_sender(
            session, row, SenderUpdate.model_validate({"status": status})
        )
        if changes:
            audit.record(session, operator(session), "sender.update", f"sender:{ident}", **changes)
    typer.echo(f"sender {ident} is {status}", err=True)


@sender_cli.command("pause")
def sender_pause(ident: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Hold the sender's Message 1s (its Message 2s still go)."""
    _set(ident, "paused", "pause")


@sender_cli.command("resume")
def sender_resume(ident: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Let a paused or stopped sender send again."""
    _set(ident, "active", "resume")


@sender_cli.command("refresh")
def sender_refresh() -> None:
    """Read each Cloud API number's messaging limit, quality and throughput from Meta now."""
    from relance.senders.refresh import refresh_senders

    for line in refresh_senders(settings_for("sender refresh")):
        typer.echo(line)


@sender_cli.command("remove")
def sender_remove(ident: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Delete a sender that no campaign names."""
    from relance.accounts import audit
    from relance.senders import service

    with unit_of_work(settings_for("sender remove")) as session:
        row = service.get_sender(session, ident)
        service.delete_sender(session, row)
        audit.record(session, operator(session), "sender.delete", f"sender:{ident}")
    typer.echo(f"sender {ident} removed", err=True)
