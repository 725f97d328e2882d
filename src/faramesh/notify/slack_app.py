"""Slack through its Web API (a bot token and a channel in the Slack config): each held
action is posted once, and that same message is updated in place after any decision
(from Slack, the dashboard, the CLI or expiry), saying who decided and when, with its
buttons gone. Escalations post into the channels named for them; reminders reply in
the message's thread.

A background task on the server's event loop follows the event hub, like the webhook
dispatcher; nothing here runs inside a decision. Calls go through slack_sdk's
WebClient (in a worker thread) and are retried a few times; where each message was
posted is stored (`nudges_repo.claim_message`), so several server processes post it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from starlette.concurrency import run_in_threadpool

from faramesh.events import ChangeEvent, EventHub, Subscription
from faramesh.notify.slack import SlackConfig, deny_modal, render_message
from faramesh.notify.webhooks import public_action
from faramesh.storage import Store, nudges_repo

log = logging.getLogger("faramesh.slack")

ATTEMPTS = 4
RETRY_BASE = 1.0
PENDING = "pending_approval"


def web_client(config: SlackConfig) -> WebClient:
    return WebClient(token=config.bot_token, base_url=config.api_url, timeout=10)


def open_deny_modal(config: SlackConfig, trigger_id: str, action_id: str, request_hash: str | None, title: str) -> None:
    """Open the deny-reason modal for the presser (views.open; the trigger lasts 3 seconds)."""
    web_client(config).views_open(trigger_id=trigger_id, view=deny_modal(action_id, request_hash, title))


def confirmed_email(config: SlackConfig, user_id: str) -> tuple[str | None, str]:
    """The email Slack has confirmed for this member (users.info; scopes users:read and
    users:read.email), or (None, why). Deleted members and bots have none."""
    try:
        answer = web_client(config).users_info(user=user_id)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        return None, f"Slack did not say who you are ({error or 'error'})"
    except (SlackClientError, OSError) as exc:
        log.warning("Slack users.info failed: %s", exc)
        return None, "Slack could not be asked who you are; try again"
    user = answer.get("user")
    if not isinstance(user, dict) or user.get("deleted") or user.get("is_bot"):
        return None, "this Slack account is not an active member"
    profile = user.get("profile")
    email = profile.get("email") if isinstance(profile, dict) else None
    if not isinstance(email, str) or "@" not in email:
        return None, "Slack shares no email for this account (the app needs the users:read.email scope)"
    if user.get("is_email_confirmed") is not True:
        return None, "Slack has not confirmed this account's email"
    return email.strip().lower(), ""


def respond(url: str, body: dict[str, Any]) -> None:
    """Answer through an interaction's response_url (an ephemeral note, or the message replaced)."""
    try:
        httpx.post(url, json=body, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("answering a Slack interaction failed: %s", exc)


class SlackApp:
    def __init__(self, store: Store, hub: EventHub, config: SlackConfig, *, retry_base: float = RETRY_BASE) -> None:
        self.store = store
        self.hub = hub
        self.config = config
        self.client = web_client(config)
        self.retry_base = retry_base
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = self.hub.subscribe(None)
        self._task = asyncio.create_task(self._loop(), name="faramesh-slack")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._sub is not None:
            self._sub.close()

    async def _loop(self) -> None:
        assert self._sub is not None
        while True:
            event = await self._sub.get(timeout=5.0)
            if self._sub.overflowed:
                log.error("the Slack notifier fell behind; some messages were not updated")
                self._sub.overflowed = False
            if event is None or event.action is None or event.action_id is None:
                continue
            try:
                await self.handle(event)
            except Exception:  # one failed message must not stop the others
                log.exception("Slack update for %s failed", event.action_id)

    async def handle(self, event: ChangeEvent) -> None:
        action = public_action(event.action)
        assert action is not None and event.action_id is not None
        status = action.get("status")
        if event.type == "action.created" and status == PENDING:
            assert self.config.channel is not None
            await self._post(event.type, action, self.config.channel)
        elif event.type == "action.escalated" and status == PENDING:
            for name in event.data.get("escalate_to") or ():
                channel = self.config.escalation_channels.get(str(name))
                if channel is not None:
                    await self._post(event.type, action, channel)
        elif event.type == "action.reminder" and status == PENDING:
            for msg in await self._messages(event.action_id):
                text = f"Still waiting for a decision: {action.get('tool')}.{action.get('operation')}"
                await self._call("chat_postMessage", channel=msg.channel, thread_ts=msg.ts, text=text)
        else:
            await self._update(event.type, action)

    async def _messages(self, action_id: str) -> list[Any]:
        return await run_in_threadpool(self.store.read, partial(nudges_repo.messages_of, action_id=action_id))

    def _render(self, event_type: str, action: dict[str, Any]) -> dict[str, Any]:
        return render_message(
            event_type, action, action_id=action.get("id"), modal=True, dashboard_url=self.config.dashboard_url
        )

    async def _post(self, event_type: str, action: dict[str, Any], channel: str) -> None:
        action_id = str(action["id"])
        claimed = await run_in_threadpool(
            self.store.write,
            partial(nudges_repo.claim_message, action_id=action_id, channel=channel, now=time.time()),
        )
        if not claimed:
            return  # posted already (by this or another server process)
        body = self._render(event_type, action)
        answer = await self._call("chat_postMessage", channel=channel, text=body["text"], blocks=body["blocks"])
        ts = answer.get("ts") if answer is not None else None
        if not isinstance(ts, str):
            await run_in_threadpool(
                self.store.write, partial(nudges_repo.release_message, action_id=action_id, channel=channel)
            )
            return
        await run_in_threadpool(
            self.store.write,
            partial(nudges_repo.set_message_ts, action_id=action_id, channel=channel, ts=ts, now=time.time()),
        )

    async def _update(self, event_type: str, action: dict[str, Any]) -> None:
        """Re-render every message of the action: pending ones keep fresh buttons (an edit
        changes the hash they carry), decided ones lose them."""
        for msg in await self._messages(str(action["id"])):
            body = self._render(event_type, action)
            await self._call("chat_update", channel=msg.channel, ts=msg.ts, text=body["text"], blocks=body["blocks"])

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """One Web API call, retried with backoff; None when it kept failing."""
        for attempt in range(ATTEMPTS):
            try:
                response = await run_in_threadpool(getattr(self.client, method), **kwargs)
                return dict(response.data) if isinstance(response.data, dict) else {}
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error in ("message_not_found", "channel_not_found", "not_in_channel", "invalid_auth"):
                    log.warning("Slack %s refused: %s", method, error)
                    return None
                log.warning("Slack %s failed (attempt %d): %s", method, attempt + 1, error)
            except (SlackClientError, OSError) as exc:
                log.warning("Slack %s failed (attempt %d): %s", method, attempt + 1, exc)
            await asyncio.sleep(self.retry_base * (2**attempt))
        return None
