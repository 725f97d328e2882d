"""Initial schema: actions, approvals, api keys, audit chain, limit usage.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("rule_id", sa.String(200)),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("operation", sa.String(128), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("approval_token", sa.String(64)),
        sa.Column("approval_quorum", sa.Integer, nullable=False, server_default="1"),
        sa.Column("approval_groups", sa.Text),
        sa.Column("expires_at", sa.Float),
        sa.Column("decided_by", sa.Text),
        sa.Column("decision_reason", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("submitted_by", "idempotency_key", name="uq_actions_idempotency"),
    )
    op.create_index("ix_actions_status_seq", "actions", ["status", "seq"])
    op.create_index("ix_actions_tool_seq", "actions", ["tool", "seq"])
    op.create_index("ix_actions_agent_seq", "actions", ["agent_id", "seq"])
    op.create_index("ix_actions_pending_expiry", "actions", ["status", "expires_at"])

    op.create_table(
        "approvals",
        sa.Column("id", Seq, primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("approver", sa.String(64), nullable=False),
        sa.Column("approver_label", sa.Text, nullable=False),
        sa.Column("approve", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("action_id", "approver", name="uq_approvals_action_approver"),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(200)),
        sa.Column("groups", sa.Text, nullable=False, server_default="[]"),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", Seq, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action_id", sa.String(64)),
        sa.Column("actor", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_action", "audit_log", ["action_id", "seq"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", Seq, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])

    op.create_table(
        "limit_usage",
        sa.Column("id", Seq, primary_key=True, autoincrement=True),
        sa.Column("limit_id", sa.String(250), nullable=False),
        sa.Column("bucket", sa.String(250), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("action_id", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_limit_usage_lookup", "limit_usage", ["limit_id", "bucket", "at"])


def downgrade() -> None:
    for table in ("limit_usage", "audit_head", "audit_log", "api_keys", "approvals", "actions"):
        op.drop_table(table)
