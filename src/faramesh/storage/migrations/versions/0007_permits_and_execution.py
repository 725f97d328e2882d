"""Execution you can prove: signed permits, single-use start and the execution lease.

- `actions.permit`, `actions.permit_expires_at`: the permit last issued for the action
  (a compact JWS) and its `exp`, so reads show it without signing again.
- `actions.started_at`, `actions.lease_expires_at`: when the agent took its single-use
  start, and when the execution lease runs out (then the outcome is unknown).
- `permit_keys`: the Ed25519 signing keys, shared by every replica. The private key is
  encrypted under the server secret; `active` is 1 for the one key that signs now and
  NULL for retired keys (a unique index keeps two replicas from both making one).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("permit", sa.Text))
        batch.add_column(sa.Column("permit_expires_at", sa.Float))
        batch.add_column(sa.Column("started_at", sa.Float))
        batch.add_column(sa.Column("lease_expires_at", sa.Float))
    op.create_index("ix_actions_lease", "actions", ["status", "lease_expires_at"])
    op.create_table(
        "permit_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("secret_id", sa.String(32), nullable=False),
        sa.Column("active", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("retired_at", sa.Float),
        sa.Column("publish_until", sa.Float),
        sa.UniqueConstraint("active", name="uq_permit_keys_active"),
    )


def downgrade() -> None:
    op.drop_table("permit_keys")
    op.drop_index("ix_actions_lease", "actions")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("started_at")
        batch.drop_column("permit_expires_at")
        batch.drop_column("permit")
