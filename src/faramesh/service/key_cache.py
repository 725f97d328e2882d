"""Who holds a presented API key, remembered for a moment.

Every request authenticates, and reading the key each time costs a pooled connection, a
transaction and a query. A verified key's identity is remembered for at most `ttl`
seconds. A revocation this process makes, or hears of from another replica (PostgreSQL
change notices), evicts the key at once; one made where no notice reaches this process
(the CLI writing to the same SQLite file) is refused at the latest `ttl` seconds later,
the same bound within which such a key's open streams and waits are ended.

Unknown or revoked keys are never remembered, so a flood of wrong keys costs a read
each and holds no memory. Entries are keyed by the key's SHA-256 digest, never the secret.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from faramesh.events import KEY_RECHECK_SECONDS
from faramesh.model import Identity

MAX_ENTRIES = 10_000


class KeyCache:
    def __init__(
        self,
        ttl: float = KEY_RECHECK_SECONDS,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Identity, float]] = OrderedDict()

    def get(self, digest: str) -> Identity | None:
        """The identity verified for this digest within the last `ttl` seconds, if any."""
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            identity, verified_at = entry
            if self._clock() - verified_at >= self.ttl:
                del self._entries[digest]
                return None
            return identity

    def put(self, digest: str, identity: Identity, verified_at: float) -> None:
        """Remember a key verified against the database at `verified_at` (this cache's
        clock, read before the database was), so a revocation that commits during the read
        is not remembered past its bound."""
        with self._lock:
            self._entries[digest] = (identity, verified_at)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def now(self) -> float:
        return self._clock()

    def evict_key(self, key_id: str) -> None:
        """Forget a revoked key: its next request reads the database and is refused."""
        with self._lock:
            for digest in [d for d, (identity, _) in self._entries.items() if identity.key_id == key_id]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
