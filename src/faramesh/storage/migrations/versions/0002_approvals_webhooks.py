"""Approve-with-changes, per-hash approvals, outgoing webhooks and their delivery log.

- actions.original_params keeps what the agent submitted when an approver edits params.
- approvals are unique per (action, approver, request_hash): a vote is for exact
  arguments, so after an edit each approver may vote once more, on the new arguments.
- webhooks (added through the admin API) and webhook_deliveries (one row per event and
  receiver, retried with backoff).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("original_params", sa.Text, nullable=True))

    with op.batch_alter_table("approvals") as batch:
        batch.drop_constraint("uq_approvals_action_approver", type_="unique")
        batch.create_unique_constraint("uq_approvals_action_approver_hash", ["action_id", "approver", "request_hash"])

    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Seq, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("action_id", sa.String(64)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float),
        # One delivery per event and receiver, however many server processes saw the event.
        sa.UniqueConstraint("webhook_id", "event_seq", name="uq_webhook_deliveries_event"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_webhook", "webhook_deliveries", ["webhook_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_constraint("uq_approvals_action_approver_hash", type_="unique")
        batch.create_unique_constraint("uq_approvals_action_approver", ["action_id", "approver"])
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("original_params")
