"""In-process notification of state changes.

The service publishes after each commit; waiters (the long-poll wait endpoint, SSE
streams) are asyncio queues living on the server's event loop. Publishing is
thread-safe because the service runs in worker threads.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChangeEvent:
    seq: int  # the audit record's sequence number: also the SSE event id
    type: str  # e.g. "action.created", "action.approved"
    action_id: str | None
    action: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    def __init__(self, hub: EventHub, action_id: str | None) -> None:
        self.hub = hub
        self.action_id = action_id
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[ChangeEvent] = asyncio.Queue(maxsize=10_000)
        self.overflowed = False

    def _deliver(self, event: ChangeEvent) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # a stream that cannot keep up is closed by its reader

    async def get(self, timeout: float | None = None) -> ChangeEvent | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_action: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()

    def subscribe(self, action_id: str | None = None) -> Subscription:
        """Subscribe to one action's changes, or to every change when action_id is None."""
        sub = Subscription(self, action_id)
        with self._lock:
            if action_id is None:
                self._all.add(sub)
            else:
                self._by_action.setdefault(action_id, set()).add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub.action_id is None:
                self._all.discard(sub)
            else:
                subs = self._by_action.get(sub.action_id)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_action[sub.action_id]

    def publish(self, event: ChangeEvent) -> None:
        with self._lock:
            targets = list(self._all)
            if event.action_id is not None:
                targets.extend(self._by_action.get(event.action_id, ()))
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub._deliver, event)
            except RuntimeError:  # the subscriber's loop is gone
                self._remove(sub)
