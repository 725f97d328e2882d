"""The webhook dispatcher: two asyncio tasks on the server's event loop.

- The *enqueuer* subscribes to the EventHub. The service publishes there after each
  commit, so nothing here runs inside a decision's transaction: it turns each event
  into one stored delivery per matching webhook (batched into one write).
- The *sender* takes due deliveries, POSTs them with httpx (bounded concurrency, at
  most `per_hook` at a time to one receiver, a total timeout per attempt) and records
  each attempt; failures are retried with exponential backoff until `max_attempts`.

A receiver that is slow or down therefore only delays its own deliveries; approvals,
denials and the agents' wake-ups never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import orjson
from starlette.concurrency import run_in_threadpool

from faramesh import __version__
from faramesh.events import ChangeEvent, EventHub, Subscription
from faramesh.notify import deliveries, slack, teams
from faramesh.notify.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Webhook,
    event_payload,
    matching,
    public_action,
    signature_header,
)
from faramesh.storage import Store

log = logging.getLogger("faramesh.webhooks")

POLL_SECONDS = 1.0  # picks up deliveries queued by other processes or before a restart
REFRESH_SECONDS = 2.0  # how stale the list of stored webhooks may get
MAX_DELAY = 3600.0
LEASE_MARGIN = 30.0
BATCH = 500


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def render_body(hook: Webhook, event: ChangeEvent, now: float, dashboard_url: str | None = None) -> bytes:
    """The exact bytes sent to `hook` for `event` (kept, so every retry sends the same)."""
    action = public_action(event.action)
    if hook.format == "slack":
        return orjson.dumps(slack.render_message(event.type, action, action_id=event.action_id))
    if hook.format == "teams":
        return orjson.dumps(
            teams.render_card(event.type, action, action_id=event.action_id, dashboard_url=dashboard_url)
        )
    at = str(action.get("updated_at")) if action and action.get("updated_at") else _iso(now)
    details = {k: v for k, v in event.data.items() if k != "submitted_by"}
    return orjson.dumps(
        event_payload(
            seq=event.seq, event_type=event.type, action_id=event.action_id, action=action, at=at, details=details
        )
    )


class WebhookDispatcher:
    def __init__(
        self,
        store: Store,
        hub: EventHub,
        file_hooks: list[Webhook] | None = None,
        *,
        retry_base: float = 2.0,
        max_attempts: int = 10,
        timeout: float = 10.0,
        concurrency: int = 8,
        per_hook: int = 2,
        on_attempt: Callable[[bool], None] | None = None,
        dashboard_url: str | None = None,
    ) -> None:
        self.store = store
        self.dashboard_url = dashboard_url  # for the links in Teams cards
        self.on_attempt = on_attempt  # told whether each attempt was delivered (metrics)
        self.hub = hub
        self.file_hooks = list(file_hooks or [])
        self.retry_base = retry_base
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.concurrency = concurrency
        self.per_hook = per_hook
        self._hooks: dict[str, Webhook] = {h.id: h for h in self.file_hooks}
        self._loaded_at = float("-inf")
        self._generation = 0  # bumped by invalidate(); tells a stale load from a fresh one
        self._loaded_generation = -1
        self._inflight: dict[int, str] = {}  # delivery id -> webhook id
        self._attempts: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._sub: Subscription | None = None
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        # httpx logs each request URL at INFO; webhook URLs (Slack's especially) carry
        # secrets, so keep them out of the server log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        if self.file_hooks or await self.hooks():
            self.listen()
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": f"faramesh-webhooks/{__version__}", "Content-Type": "application/json"},
        )
        self._tasks = [
            asyncio.create_task(self._enqueue_loop(), name="faramesh-webhooks-enqueue"),
            asyncio.create_task(self._send_loop(), name="faramesh-webhooks-send"),
        ]

    async def stop(self) -> None:
        for task in [*self._tasks, *self._attempts]:
            task.cancel()
        for task in [*self._tasks, *self._attempts]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sub is not None:
            self._sub.close()
        if self._http is not None:
            await self._http.aclose()

    def invalidate(self) -> None:
        """Forget the cached webhook list (after one was added or removed here)."""
        self._generation += 1
        if self._changed is not None:
            self._changed.set()

    def listen(self) -> None:
        """Subscribe to state changes now. Called (on the event loop) when a webhook is
        added, so the change right after the `201` is not missed. With no webhooks the
        dispatcher does not subscribe at all and costs nothing per event."""
        if self._sub is None:
            self._sub = self.hub.subscribe(None)

    async def hooks(self) -> list[Webhook]:
        if self._loaded_generation != self._generation or time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            generation = self._generation
            stored = await run_in_threadpool(self.store.read, deliveries.list_webhooks)
            self._hooks = {h.id: h for h in [*self.file_hooks, *stored]}
            self._loaded_at = time.monotonic()
            self._loaded_generation = generation
        return list(self._hooks.values())

    # -- enqueue ----------------------------------------------------------------
    async def _enqueue_loop(self) -> None:
        while True:
            try:
                await self._enqueue_next()
            except Exception:  # a database hiccup must not stop later notifications
                log.exception("could not queue webhook deliveries")
                await asyncio.sleep(1.0)

    async def _enqueue_next(self) -> None:
        """Wait for the next batch of changes and queue their deliveries."""
        assert self._changed is not None
        if not await self.hooks():
            if self._loaded_generation != self._generation:
                return  # a webhook was added or removed while loading: look again
            if self._sub is not None:  # the last webhook was removed
                self._sub.close()
                self._sub = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFRESH_SECONDS):
                    await self._changed.wait()
            self._changed.clear()
            return
        self.listen()
        assert self._sub is not None
        first = await self._sub.get(timeout=REFRESH_SECONDS)
        if first is None:
            return
        batch = [first]
        while len(batch) < BATCH and not self._sub.queue.empty():
            batch.append(self._sub.queue.get_nowait())
        if self._sub.overflowed:
            log.error("webhook dispatcher fell behind; some events were not delivered")
            self._sub.overflowed = False
        await self._enqueue(batch)

    async def _enqueue(self, events: list[ChangeEvent]) -> None:
        hooks = await self.hooks()
        if not hooks:
            return
        now = time.time()
        rows = []
        for event in events:
            status = event.action.get("status") if event.action else None
            for hook in matching(hooks, event.type, status):
                rows.append(
                    {
                        "webhook_id": hook.id,
                        "event": event.type,
                        "event_seq": event.seq,
                        "action_id": event.action_id,
                        "payload": render_body(hook, event, now, self.dashboard_url).decode("utf-8"),
                        "status": deliveries.PENDING,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
        if rows:
            await run_in_threadpool(self.store.write, partial(deliveries.enqueue, rows=rows))
            self._poke()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- send -------------------------------------------------------------------
    async def _send_loop(self) -> None:
        assert self._wake is not None
        while True:
            delay = POLL_SECONDS
            try:
                delay = await self._send_due()
            except Exception:  # a database hiccup: try again at the next poll
                log.exception("webhook delivery pass failed")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the wait ends (an attempt finishing pokes it), and stop() then
            # waits for a loop that never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    async def _send_due(self) -> float:
        """Start attempts for what is due; return how long to sleep before looking again."""
        free = self.concurrency - len(self._inflight)
        blocked = free <= 0
        if free > 0:
            busy = Counter(self._inflight.values())
            full = {hook_id for hook_id, n in busy.items() if n >= self.per_hook}
            now = time.time()
            candidates = await run_in_threadpool(
                self.store.read, partial(deliveries.due, now=now, limit=free * 4, exclude=full)
            )
            picked: list[Any] = []
            for row in candidates:
                if len(picked) >= free or busy[row.webhook_id] >= self.per_hook:
                    blocked = True
                    continue
                busy[row.webhook_id] += 1
                picked.append(row)
            blocked = blocked or bool(full)
            if picked:
                lease = self.timeout + LEASE_MARGIN
                claimed = await run_in_threadpool(
                    self.store.write, partial(deliveries.claim, candidates=picked, now=now, lease=lease)
                )
                for row in claimed:
                    self._start_attempt(row)
        nxt = await run_in_threadpool(self.store.read, deliveries.next_due)
        if nxt is None:
            return POLL_SECONDS
        wait = nxt - time.time()
        if wait > 0:
            return min(POLL_SECONDS, wait)
        # Due already. With every slot (or that receiver's share) taken, an attempt that
        # finishes wakes the loop; otherwise it just became due: look again now.
        return POLL_SECONDS if blocked else 0.005

    def _start_attempt(self, row: Any) -> None:
        self._inflight[int(row.id)] = row.webhook_id
        task = asyncio.create_task(self._attempt(row))
        self._attempts.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._attempts.discard(t)
            self._inflight.pop(int(row.id), None)
            self._poke()

        task.add_done_callback(done)

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after `attempts` failed ones: base, 2x, 4x, ..."""
        return float(min(MAX_DELAY, self.retry_base * (2 ** max(0, attempts - 1))))

    async def _attempt(self, row: Any) -> None:
        hook = self._hooks.get(row.webhook_id)
        if hook is None:
            await self.hooks()
            hook = self._hooks.get(row.webhook_id)
        ok, http_status = False, None
        error: str | None = "webhook no longer configured"
        if hook is not None:
            ok, http_status, error = await self._post(hook, row)
        attempts = int(row.attempts) + 1
        now = time.time()
        retry_at = None if ok or hook is None or attempts >= self.max_attempts else now + self.backoff(attempts)
        if not ok:
            log.warning("webhook %s delivery %s attempt %d failed: %s", row.webhook_id, row.id, attempts, error)
        if self.on_attempt is not None:
            self.on_attempt(ok)
        await run_in_threadpool(
            self.store.write,
            partial(
                deliveries.record_attempt,
                delivery_id=int(row.id),
                attempts_before=int(row.attempts),
                ok=ok,
                http_status=http_status,
                error=error,
                now=now,
                next_attempt_at=retry_at,
            ),
        )

    async def _post(self, hook: Webhook, row: Any) -> tuple[bool, int | None, str | None]:
        assert self._http is not None
        body = row.payload.encode("utf-8")
        headers = {EVENT_HEADER: row.event, DELIVERY_HEADER: str(row.id)}
        if hook.secret:
            headers[SIGNATURE_HEADER] = signature_header(hook.secret, body)
        try:
            # A total deadline: a receiver that trickles bytes cannot hold a slot forever.
            async with asyncio.timeout(self.timeout):
                response = await self._http.post(hook.url, content=body, headers=headers, timeout=self.timeout)
        except TimeoutError:
            return False, None, f"no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return False, None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return True, response.status_code, None
        return False, response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"
