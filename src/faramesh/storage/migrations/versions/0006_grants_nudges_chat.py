"""Standing grants, reminders and escalations of held actions, and chat messages to update.

- `grants`: an approver's standing permission for one tool and operation (and optionally
  one agent) whose params meet conditions, until it expires or is used up or revoked.
- `approval_nudges`: one row per reminder or escalation sent for a held action, so each
  goes out once however many server processes sweep.
- `chat_messages`: where a held action was posted in chat (Slack channel and message
  ts), so the message can be updated in place after the decision.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("conditions", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_by_label", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("max_uses", sa.Integer),
        sa.Column("uses", sa.Integer, nullable=False, server_default="0"),
        sa.Column("revoked_at", sa.Float),
        sa.Column("revoked_by", sa.Text),
        sa.Column("action_id", sa.String(64)),
    )
    op.create_index("ix_grants_lookup", "grants", ["tool", "operation", "expires_at"])
    op.create_table(
        "approval_nudges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("action_id", "kind", name="uq_approval_nudges_action_kind"),
    )
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(32)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("action_id", "channel", name="uq_chat_messages_action_channel"),
    )


def downgrade() -> None:
    op.drop_table("chat_messages")
    op.drop_table("approval_nudges")
    op.drop_index("ix_grants_lookup", "grants")
    op.drop_table("grants")
