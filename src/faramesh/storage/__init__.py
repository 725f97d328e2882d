"""Storage: SQLite (default) or PostgreSQL behind one interface."""

from faramesh.storage.store import Store, normalize_url

__all__ = ["Store", "normalize_url"]
