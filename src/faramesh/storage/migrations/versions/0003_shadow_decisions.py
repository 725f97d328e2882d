"""Shadow mode: the decision a candidate policy would have made, kept beside the real one.

- actions.shadow_decision (allow | deny | require_approval | error), shadow_rule_id and
  shadow_policy_hash; all null when the server ran without a shadow policy.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("shadow_decision", sa.String(32), nullable=True))
        batch.add_column(sa.Column("shadow_rule_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("shadow_policy_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("shadow_policy_hash")
        batch.drop_column("shadow_rule_id")
        batch.drop_column("shadow_decision")
