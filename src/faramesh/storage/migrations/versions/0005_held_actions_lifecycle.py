"""Held actions that outlive human time: re-attach, presence, lapse of unused approvals.

- `submitted_hash`: the request hash the agent submitted (an approver's edit changes
  `request_hash`, but a retry of the agent's call still carries the original one).
- `agent_seen_at`: when the submitting agent last waited on the action (presence).
- `picked_up_at`: when the submitting agent first saw the approval.
- `lapses_at`: when an approval nobody picked up stops being permission to run.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("submitted_hash", sa.String(64)))
        batch.add_column(sa.Column("agent_seen_at", sa.Float))
        batch.add_column(sa.Column("picked_up_at", sa.Float))
        batch.add_column(sa.Column("lapses_at", sa.Float))
    # Actions never edited were submitted with the hash they carry now.
    op.execute("UPDATE actions SET submitted_hash = request_hash WHERE original_params IS NULL")
    op.create_index("ix_actions_reattach", "actions", ["submitted_hash", "status"])
    op.create_index("ix_actions_lapse", "actions", ["status", "lapses_at"])


def downgrade() -> None:
    op.drop_index("ix_actions_lapse", "actions")
    op.drop_index("ix_actions_reattach", "actions")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("lapses_at")
        batch.drop_column("picked_up_at")
        batch.drop_column("agent_seen_at")
        batch.drop_column("submitted_hash")
