"""Notification of state changes, within one process and across processes.

The service publishes after each commit; waiters (the long-poll wait endpoint, SSE
streams) are asyncio queues living on the server's event loop. Publishing is
thread-safe because the service runs in worker threads.

When several server processes share a PostgreSQL database, `RemoteRelay` turns the
change notices of the other processes (LISTEN/NOTIFY, `faramesh.storage.notify`) into
events on the local hub, so a waiter on one replica wakes when another one decides.

What a stream or the relay missed is read back from the audit log in one way:
`changes_after` (the records after a position, under the names subscribers know, see
`published_type`) and, for a caller's stream, `replay_for` (those changes with each
action as that caller may see it now).

Every subscription made for a request remembers the key id that opened it. When that
key is revoked (here, on another replica, or by the CLI), `EventHub.revoke` ends those
subscriptions at once: their next `get` raises `KeyRevoked`, so streams close and waits
answer 401. `EventHub.check_keys` is the safety net for revocations nobody announced
(the CLI on SQLite): the server runs it every KEY_RECHECK_SECONDS.

When the server is told to stop (SIGTERM), `EventHub.drain` wakes every subscription held
by a request the same way: its next `get` raises `ServerDraining`, so waits answer 503
with Retry-After and streams end (their clients reconnect with Last-Event-ID) instead of
holding the process until it is killed. The server's own readers (no key) keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from faramesh import audit
from faramesh.errors import FarameshError, KeyRevoked, ServerDraining
from faramesh.model import Identity

if TYPE_CHECKING:
    from faramesh.storage import Store
    from faramesh.storage.notify import Listener


# How often a waiter re-reads the database when no event came. Within one process
# every change is published, so this is only a safety net; across processes a lost
# notice (listener reconnecting) costs at most REMOTE_RECHECK_SECONDS.
LOCAL_RECHECK_SECONDS = 5.0
REMOTE_RECHECK_SECONDS = 1.0
# How often the server re-reads, in one query, whether the keys holding open streams and
# waits are still active. Announced revocations end them at once; this bounds the rest.
KEY_RECHECK_SECONDS = 2.0


@dataclass(frozen=True)
class ChangeEvent:
    seq: int  # the audit record's sequence number: also the SSE event id
    type: str  # e.g. "action.created", "action.approved"
    action_id: str | None
    action: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


# Decisions by a person or key: their events tell receivers (webhooks) who decided.
DECISION_EVENTS = frozenset({"action.approved", "action.denied", "action.approval_recorded"})


def decision_details(actor: str | None, person: Any) -> dict[str, Any]:
    """`actor` (the label) and `person` ({issuer, subject, email, name}, or None for a key)."""
    return {"actor": actor, "person": person if isinstance(person, dict) else None}


# Put in a subscription's queue to wake its reader when its key is revoked.
_REVOKED = ChangeEvent(seq=-1, type="key.revoked", action_id=None)
# Put in a request's subscription queue to wake its reader when the server starts draining.
_DRAINING = ChangeEvent(seq=-2, type="server.draining", action_id=None)


class Subscription:
    def __init__(self, hub: EventHub, action_id: str | None, key_id: str | None = None) -> None:
        self.hub = hub
        self.action_id = action_id
        self.key_id = key_id  # whose request holds it; None for the server's own readers
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[ChangeEvent] = asyncio.Queue(maxsize=10_000)
        self.overflowed = False
        self.revoked = False  # set from any thread; checked before anything is handed out

    def _deliver(self, event: ChangeEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # a stream that cannot keep up is closed by its reader

    def _wake(self, sentinel: ChangeEvent = _REVOKED) -> None:
        # A full queue means the reader is not waiting; its next get() sees the flags first.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(sentinel)

    def check(self) -> None:
        """Raise KeyRevoked when the key holding this subscription was revoked."""
        if self.revoked:
            raise KeyRevoked()

    def check_draining(self) -> None:
        """Raise ServerDraining when the server is stopping and a request holds this subscription."""
        if self.key_id is not None and self.hub.draining:
            raise ServerDraining(retry_after=self.hub.retry_after)

    async def get(self, timeout: float | None = None) -> ChangeEvent | None:
        """The next event, or None after `timeout`; raises KeyRevoked once the key is revoked
        (events still queued are dropped: nothing reaches a revoked key) and ServerDraining
        once the server stops (an event that arrived first is still handed out)."""
        self.check()
        self.check_draining()
        try:
            # Not wait_for: on Python 3.11 it swallows a cancel that arrives with an event.
            async with asyncio.timeout(timeout):
                event = await self.queue.get()
        except TimeoutError:
            event = None
        self.check()
        if event is None or event is _DRAINING:
            self.check_draining()
        return None if event is _REVOKED or event is _DRAINING else event

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    def __init__(self, recheck_interval: float = LOCAL_RECHECK_SECONDS) -> None:
        self._lock = threading.Lock()
        self._by_action: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self.recheck_interval = recheck_interval
        # Sequence numbers this process published itself, so a catch-up from the
        # audit log after a lost connection does not announce them twice.
        self._recent: deque[int] = deque(maxlen=20_000)
        self._recent_set: set[int] = set()
        self._by_key: dict[str, set[Subscription]] = {}
        # Keys this process learnt were revoked (revocation is final): a subscription
        # opened by a request authenticated just before the revocation starts revoked.
        self._revoked: set[str] = set()
        self._revocation_listeners: list[Callable[[str], None]] = []
        self.key_recheck_interval = KEY_RECHECK_SECONDS
        # Set once when the server starts to stop; never cleared (a new process starts fresh).
        self.draining = False
        self.retry_after = 1

    def subscribe(self, action_id: str | None = None, *, key_id: str | None = None) -> Subscription:
        """Subscribe to one action's changes, or to every change when action_id is None.

        `key_id` is the key of the request holding the subscription: revoking it ends the
        subscription. Only the server's own background readers pass None."""
        sub = Subscription(self, action_id, key_id)
        with self._lock:
            if action_id is None:
                self._all.add(sub)
            else:
                self._by_action.setdefault(action_id, set()).add(sub)
            if key_id is not None:
                self._by_key.setdefault(key_id, set()).add(sub)
                sub.revoked = key_id in self._revoked
        return sub

    def on_revoke(self, listener: Callable[[str], None]) -> None:
        """Call `listener(key_id)` whenever this process learns a key was revoked."""
        self._revocation_listeners.append(listener)

    def revoke(self, key_id: str) -> int:
        """End every subscription held by this key, now and later; thread-safe. Returns how many."""
        with self._lock:
            self._revoked.add(key_id)
            targets = list(self._by_key.get(key_id, ()))
            for sub in targets:
                sub.revoked = True
        for listener in self._revocation_listeners:
            listener(key_id)
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._wake)
            except RuntimeError:  # the subscriber's loop is gone
                self._remove(sub)
        return len(targets)

    def drain(self, retry_after: int = 1) -> int:
        """Stop serving requests' waits and streams: wake every subscription a request holds
        (its reader raises ServerDraining) and refuse new ones. Thread-safe; returns how many."""
        with self._lock:
            self.retry_after = retry_after
            self.draining = True
            targets = [sub for sub in (*self._all, *self._subs_by_action()) if sub.key_id is not None]
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._wake, _DRAINING)
            except RuntimeError:  # the subscriber's loop is gone
                self._remove(sub)
        return len(targets)

    def refuse_if_draining(self) -> None:
        """For a request about to open a wait or a stream: ServerDraining while stopping."""
        if self.draining:
            raise ServerDraining(retry_after=self.retry_after)

    def _subs_by_action(self) -> list[Subscription]:
        return [sub for subs in self._by_action.values() for sub in subs]

    def held_keys(self) -> set[str]:
        """Key ids holding open subscriptions that are not known to be revoked."""
        with self._lock:
            return set(self._by_key) - self._revoked

    def check_keys(self, revoked_among: Callable[[set[str]], set[str]]) -> int:
        """Revoke the held keys that `revoked_among` (a database read) reports revoked."""
        held = self.held_keys()
        if not held:
            return 0
        return sum(self.revoke(key_id) for key_id in revoked_among(held))

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub.key_id is not None:
                held = self._by_key.get(sub.key_id)
                if held is not None:
                    held.discard(sub)
                    if not held:
                        del self._by_key[sub.key_id]
            if sub.action_id is None:
                self._all.discard(sub)
            else:
                subs = self._by_action.get(sub.action_id)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_action[sub.action_id]

    def has_subscribers(self, action_id: str | None) -> bool:
        with self._lock:
            return bool(self._all) or (action_id is not None and action_id in self._by_action)

    def published(self, seq: int) -> bool:
        """Whether this hub already published the event with this sequence number."""
        with self._lock:
            return seq in self._recent_set

    def publish(self, event: ChangeEvent) -> None:
        with self._lock:
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(event.seq)
            self._recent_set.add(event.seq)
            targets = list(self._all)
            if event.action_id is not None:
                targets.extend(self._by_action.get(event.action_id, ()))
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._deliver, event)
            except RuntimeError:  # the subscriber's loop is gone
                self._remove(sub)


class ActionSource(Protocol):
    """What the relay needs from the service (the Governor provides it)."""

    store: Store
    hub: EventHub

    def snapshot(self, action_id: str) -> tuple[dict[str, Any], str] | None:
        """The action as the API shows it (no token) and the key id that submitted it."""
        ...


# -- reading back what was missed ---------------------------------------------------

# The audit log records a submit as "action.submitted"; subscribers have always been
# told "action.created" (the service publishes that name). Every other name is the same.
_PUBLISHED_TYPES = {"action.submitted": "action.created"}
RELAY_BATCH = 1000


def published_type(audit_event: str) -> str:
    """The event name subscribers see for an audit record's event name."""
    return _PUBLISHED_TYPES.get(audit_event, audit_event)


@dataclass(frozen=True)
class MissedChange:
    """A change read back from the audit log, named as it was published."""

    seq: int
    type: str
    action_id: str | None
    record: audit.AuditRecord


def changes_after(store: Store, after: int, limit: int) -> list[MissedChange]:
    """The first `limit` changes recorded after the audit position `after`, oldest first."""
    records = store.read(partial(audit.events_after, seq=after, limit=limit))
    return [MissedChange(rec.seq, published_type(rec.event), rec.action_id, rec) for rec in records]


class ActionReader(Protocol):
    """What a replay needs from the service (the Governor provides it)."""

    store: Store

    def get(self, identity: Identity, action_id: str) -> dict[str, Any]:
        """The action as `identity` may see it; raises NotFound when it may not."""
        ...


@dataclass(frozen=True)
class Replay:
    changes: list[tuple[MissedChange, dict[str, Any]]]  # each change with its action as it is now
    last: int  # the audit position read up to: the live stream goes on from here
    truncated: bool  # more than `limit` changes were missed


def replay_for(
    reader: ActionReader,
    identity: Identity,
    after: int,
    *,
    limit: int,
    action_id: str | None = None,
    keep_first: bool = False,
) -> Replay:
    """What a stream of `identity`'s missed after the audit position `after`: the changes
    to actions it may see (to `action_id` alone when given), each with the action as
    `identity` may see it now. When more than `limit` were missed, `keep_first` decides:
    the first `limit` of them, or none (the caller then asks its client to reload).

    Only "you may not see this action" (a FarameshError from the read) skips a change;
    any other failure propagates, so a stream never silently drops what it owes.
    """
    found = changes_after(reader.store, after, limit + 1)
    truncated = len(found) > limit
    if truncated and not keep_first:
        return Replay([], after, True)
    found = found[:limit]
    out: list[tuple[MissedChange, dict[str, Any]]] = []
    for change in found:
        if change.action_id is None or (action_id is not None and change.action_id != action_id):
            continue
        try:
            action = reader.get(identity, change.action_id)
        except FarameshError:
            continue
        out.append((change, action))
    return Replay(out, found[-1].seq if found else after, truncated)


class RemoteRelay:
    """Publishes on the local hub what other processes changed in the shared database."""

    def __init__(self, source: ActionSource) -> None:
        self.source = source
        self.hub = source.hub
        self.last_seq: int | None = None  # highest audit seq seen in a notice (own ones too)
        self._lock = threading.Lock()

    def on_notice(self, notice: Mapping[str, Any], own: bool) -> None:
        seq, action_id, event_type = notice.get("seq"), notice.get("action_id"), notice.get("type")
        if not isinstance(seq, int) or not isinstance(event_type, str):
            return
        if event_type == "key.revoked":
            key_id = notice.get("key_id")
            if isinstance(key_id, str):
                self.hub.revoke(key_id)  # idempotent, so this process's own notice does no harm
        elif not isinstance(action_id, str):
            return
        with self._lock:
            self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        if not own and isinstance(action_id, str):
            self._publish(seq, event_type, action_id)

    def on_connect(self, first: bool) -> None:
        store = self.source.store
        if first or self.last_seq is None:
            # Listening now; anything committed after the current head arrives as a notice.
            head_seq, _ = store.read(audit.head)
            with self._lock:
                self.last_seq = max(self.last_seq or 0, head_seq)
            return
        # Reconnected: notices sent meanwhile are lost, but the audit log has them all.
        after = self.last_seq
        while True:
            changes = changes_after(store, after, RELAY_BATCH)
            for change in changes:
                key_id = change.record.data.get("key_id")
                if change.type == "key.revoked" and isinstance(key_id, str):
                    self.hub.revoke(key_id)
                elif change.action_id is not None:
                    self._publish(change.seq, change.type, change.action_id)
                after = change.seq
            with self._lock:
                self.last_seq = max(self.last_seq or 0, after)
            if len(changes) < RELAY_BATCH:
                break

    def _publish(self, seq: int, event_type: str, action_id: str) -> None:
        if self.hub.published(seq) or not self.hub.has_subscribers(action_id):
            return  # already announced, or nobody here is waiting: skip the read
        snap = self.source.snapshot(action_id)
        if snap is None:
            return
        action, submitted_by = snap
        data: dict[str, Any] = {"submitted_by": submitted_by}
        if event_type in DECISION_EVENTS:
            # As the deciding process publishes it: who decided, from the audit record.
            record = self.source.store.read(partial(audit.event_at, seq=seq))
            if record is not None:
                data |= decision_details(record.actor, record.data.get("person"))
        self.hub.publish(ChangeEvent(seq=seq, type=event_type, action_id=action_id, action=action, data=data))


def start_remote_relay(source: ActionSource) -> Listener | None:
    """Wake this process's waiters on other processes' changes; None when the database is not shared."""
    if not source.store.shared:
        return None
    relay = RemoteRelay(source)
    source.hub.recheck_interval = min(source.hub.recheck_interval, REMOTE_RECHECK_SECONDS)
    listener = source.store.listener(relay.on_notice, relay.on_connect).start()
    # Serve only once listening (or after a bounded wait: waiters re-read meanwhile).
    listener.connected.wait(5.0)
    return listener
