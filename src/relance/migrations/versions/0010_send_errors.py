"""Send errors kept per recipient: recipients.last_error_code and the campaigns.limited counter.

``last_error_code`` is the provider's code of a recipient's failure (Meta's 131049...), shown
with ``last_error`` and filtered on by retry-limited. ``limited`` counts the failed recipients
Meta held back (per-user marketing limit), apart from the other failures.

The upgrade fills both from the rows: each failed recipient takes the code of its latest failed
message, and each campaign counts its failed recipients with a limit code. It also recounts
``delivered`` and ``read`` as relance now counts them, once per contact (a retried Message 1
delivered again no longer counts twice). The downgrade drops the two columns; the stored
``delivered``/``read`` stay as counted here (the previous revision's reconciliation recounts
those of the campaigns still sending, per message).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Meta's 131049 and Twilio's 63049 (relance.providers.failures.LIMITED_CODES when written).
LIMITED = "('131049', '63049')"
M1 = "messages.campaign_id = campaigns.id AND messages.kind = 'message_1'"


def upgrade() -> None:
    op.add_column("recipients", sa.Column("last_error_code", sa.String(50), nullable=True))
    op.add_column(
        "campaigns", sa.Column("limited", sa.Integer(), server_default="0", nullable=False)
    )
    op.execute(
        "UPDATE recipients SET last_error_code = ("
        "SELECT messages.error_code FROM messages WHERE messages.recipient_id = recipients.id "
        "AND messages.status = 'failed' ORDER BY messages.failed_at DESC, messages.id DESC "
        "LIMIT 1) WHERE state = 'failed'"
    )
    op.execute(
        "UPDATE campaigns SET limited = (SELECT count(*) FROM recipients "
        "WHERE recipients.campaign_id = campaigns.id AND recipients.state = 'failed' "
        f"AND recipients.last_error_code IN {LIMITED})"
    )
    for counter, stamp in (("delivered", "delivered_at"), ("read", "read_at")):
        op.execute(
            f'UPDATE campaigns SET "{counter}" = (SELECT count(DISTINCT messages.recipient_id) '
            f"FROM messages WHERE {M1} AND messages.{stamp} IS NOT NULL)"
        )


def downgrade() -> None:
    # Not in batch mode: on SQLite that copies the table and drops the old one, and with
    # foreign keys on, the drop deletes every row that refers to it. SQLite >= 3.35 drops a
    # column in place.
    op.drop_column("campaigns", "limited")
    op.drop_column("recipients", "last_error_code")
