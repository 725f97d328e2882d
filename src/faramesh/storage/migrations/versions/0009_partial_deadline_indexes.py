"""The deadline indexes hold only the actions that have the deadline.

`ix_actions_pending_expiry`, `ix_actions_lapse` and `ix_actions_lease` serve the sweeper's
questions ("which held action expired first", "which approval lapsed", "which start's lease
ran out"). Most actions never get those deadlines (an allowed or denied submit has none),
yet every insert added an entry with a null deadline to all three. They are now partial
indexes over the rows whose deadline is set, so a submit writes to three indexes fewer.
Building each reads the whole `actions` table once; on PostgreSQL writes to the table
wait meanwhile.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# index -> (columns, the deadline column)
_DEADLINES = {
    "ix_actions_pending_expiry": (["status", "expires_at"], "expires_at"),
    "ix_actions_lapse": (["status", "lapses_at"], "lapses_at"),
    "ix_actions_lease": (["status", "lease_expires_at"], "lease_expires_at"),
}


def upgrade() -> None:
    for name, (columns, deadline) in _DEADLINES.items():
        where = sa.text(f"{deadline} IS NOT NULL")
        op.drop_index(name, "actions")
        op.create_index(name, "actions", columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, (columns, _deadline) in _DEADLINES.items():
        op.drop_index(name, "actions")
        op.create_index(name, "actions", columns)
