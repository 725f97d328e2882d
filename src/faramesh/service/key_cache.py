"""Who holds a presented API key, remembered for a moment.

Every request authenticates, and reading the key each time costs a pooled connection, a
transaction and a query. A verified key's identity is remembered for at most `ttl`
seconds. A revocation this process makes, or hears of from another replica (PostgreSQL
change notices), evicts the key at once; one made where no notice reaches this process
(the CLI writing to the same SQLite file) is refused at the latest `ttl` seconds later,
the same bound within which such a key's open streams and waits are ended.

Unknown or revoked keys are never remembered, so a flood of wrong keys costs a read
each and holds no memory. Entries are keyed by the key's SHA-256 digest, never the secret.

A key in use is read again ahead of its expiry: once an entry is half its `ttl` old, one
request claims the refresh (`claim_refresh`) and re-verifies the key in the background
while every request, that one included, is still answered from memory. A key in steady
use thus never makes a request wait for the database (without this, every `ttl` seconds
all requests then in flight each read the key, and under load the pool opened new
connections for them), and a revocation no notice announced is found within half the
bound. A key idle for longer than `ttl` is read in the foreground, as before.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from faramesh.events import KEY_RECHECK_SECONDS
from faramesh.model import Identity

MAX_ENTRIES = 10_000
REFRESH_AFTER = 0.5  # of the ttl: a used key is re-verified in the background from then on


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
        self._refreshing: set[str] = set()  # digests a caller is re-verifying now
        # Bumped by every eviction: a read that began before one must not put back
        # what the eviction took out (the read may predate the revocation).
        self._evictions = 0

    def get(self, digest: str) -> Identity | None:
        """The identity verified for this digest within the last `ttl` seconds, if any."""
        with self._lock:
            return self._get_locked(digest)

    def _get_locked(self, digest: str) -> Identity | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        identity, verified_at = entry
        if self._clock() - verified_at >= self.ttl:
            del self._entries[digest]
            return None
        return identity

    def lookup(self, digest: str) -> tuple[Identity | None, bool]:
        """`get`, and `claim_refresh` for a key it found, under one lock: what every
        request that presents a remembered key asks."""
        with self._lock:
            identity = self._get_locked(digest)
            return identity, identity is not None and self._claim_locked(digest)

    def claim_refresh(self, digest: str) -> bool:
        """True, to one caller, when this remembered key is due a background re-read: its
        entry is at least `REFRESH_AFTER` of the ttl old and nobody is re-reading it. The
        caller ends the claim with `put`, `drop` or `release_refresh`."""
        with self._lock:
            return self._claim_locked(digest)

    def _claim_locked(self, digest: str) -> bool:
        entry = self._entries.get(digest)
        if entry is None or digest in self._refreshing:
            return False
        if self._clock() - entry[1] < self.ttl * REFRESH_AFTER:
            return False
        self._refreshing.add(digest)
        return True

    def release_refresh(self, digest: str) -> None:
        """End a claim whose read failed: the entry expires when it would have."""
        with self._lock:
            self._refreshing.discard(digest)

    def evictions(self) -> int:
        """A token to pass to `put`, read before the database is."""
        with self._lock:
            return self._evictions

    def drop(self, digest: str) -> None:
        """Forget one key (a re-read found it revoked or gone)."""
        with self._lock:
            self._entries.pop(digest, None)
            self._refreshing.discard(digest)
            self._evictions += 1

    def put(self, digest: str, identity: Identity, verified_at: float, evictions: int | None = None) -> None:
        """Remember a key verified against the database at `verified_at` (this cache's
        clock, read before the database was), so a revocation that commits during the read
        is not remembered past its bound. With `evictions` (the token read before the
        database): nothing is remembered when a revocation evicted keys meanwhile."""
        with self._lock:
            self._refreshing.discard(digest)
            if evictions is not None and evictions != self._evictions:
                self._entries.pop(digest, None)
                return
            self._entries[digest] = (identity, verified_at)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def now(self) -> float:
        return self._clock()

    def evict_key(self, key_id: str) -> None:
        """Forget a revoked key: its next request reads the database and is refused."""
        with self._lock:
            self._evictions += 1
            for digest in [d for d, (identity, _) in self._entries.items() if identity.key_id == key_id]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._evictions += 1
            self._entries.clear()
