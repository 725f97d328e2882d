"""Indexes for the list filters that were scans: own actions, risk, time ranges.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_actions_submitter_seq", "actions", ["submitted_by", "seq"])
    op.create_index("ix_actions_risk_seq", "actions", ["risk_level", "seq"])
    op.create_index("ix_actions_created", "actions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_actions_created", "actions")
    op.drop_index("ix_actions_risk_seq", "actions")
    op.drop_index("ix_actions_submitter_seq", "actions")
