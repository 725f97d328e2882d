"""People who sign in with single sign-on, their dashboard sessions, and who cast each vote.

- `people`: one row per identity provider issuer and subject, with the email, name,
  groups and role the provider gave at the last sign-in or re-check.
- `person_sessions`: a person's dashboard sessions (the hash of the cookie's id, expiry,
  the last re-check with the provider, sealed tokens, when and why it ended).
- `approvals.approver_person`: the person (issuer, subject, email, name) behind a vote.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("email", sa.String(500)),
        sa.Column("email_verified", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("role", sa.String(16)),
        sa.Column("groups", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
    )
    op.create_index("ix_people_email", "people", ["email"])
    op.create_table(
        "person_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("tokens", sa.Text),
        sa.Column("ended_at", sa.Float),
        sa.Column("ended_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("ix_person_sessions_person", "person_sessions", ["person_id"])
    op.create_index("ix_person_sessions_expiry", "person_sessions", ["expires_at"])
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("approver_person", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("approver_person")
    op.drop_index("ix_person_sessions_expiry", "person_sessions")
    op.drop_index("ix_person_sessions_person", "person_sessions")
    op.drop_table("person_sessions")
    op.drop_index("ix_people_email", "people")
    op.drop_table("people")
