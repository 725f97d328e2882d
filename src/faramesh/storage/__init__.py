"""Storage: SQLite (default) or PostgreSQL behind one interface.

The only package that speaks SQL: `Store` runs transactions, and the repository
modules (`actions_repo`, `approvals_repo`, `limits_repo`, `keys_repo`, `webhooks_repo`,
`audit_log`) hold the statements, with every SQLite/PostgreSQL difference. The service
reaches actions, keys, limits, webhooks and the audit log through the typed
`repositories.Repositories`; `memory` is their in-memory twin.
"""

from faramesh.storage.errors import DuplicateRow
from faramesh.storage.store import Store, database_file, normalize_url

__all__ = ["DuplicateRow", "Store", "database_file", "normalize_url"]
