"""Notifications to people: signed outgoing webhooks (JSON or Slack Block Kit) and
Slack's Approve / Deny buttons.

`start(app, governor, settings)` loads the configured files and starts the delivery
dispatcher; the server calls it in its lifespan and `stop()`s the result on exit.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from faramesh.notify.dispatcher import WebhookDispatcher
from faramesh.notify.slack import SlackConfig, load_slack_config
from faramesh.notify.slack_app import SlackApp
from faramesh.notify.webhooks import Webhook, load_webhook_file, verify_signature

if TYPE_CHECKING:
    from faramesh.config import Settings
    from faramesh.service import Governor

__all__ = [
    "Notifiers",
    "SlackApp",
    "SlackConfig",
    "Webhook",
    "WebhookDispatcher",
    "load_slack_config",
    "load_webhook_file",
    "start",
    "verify_signature",
]


class Notifiers:
    """What `start` started: the webhook dispatcher and, with a Slack bot token, the Slack app."""

    def __init__(self, webhooks: WebhookDispatcher, slack: SlackApp | None) -> None:
        self.webhooks = webhooks
        self.slack = slack

    async def stop(self) -> None:
        if self.slack is not None:
            await self.slack.stop()
        await self.webhooks.stop()


async def start(app: Any, governor: Governor, settings: Settings) -> Notifiers:
    """Load `--webhooks` and `--slack-config`, start delivering, and expose both on app.state."""
    file_hooks = load_webhook_file(settings.webhooks) if settings.webhooks else []
    app.state.slack = load_slack_config(settings.slack_config) if settings.slack_config else None
    dispatcher = WebhookDispatcher(
        governor.store,
        governor.hub,
        file_hooks,
        retry_base=settings.webhook_retry_base,
        timeout=settings.webhook_timeout,
        on_attempt=lambda ok: governor.telemetry.metrics.webhook_delivery("delivered" if ok else "failed"),
        dashboard_url=settings.public_url,
    )
    await dispatcher.start()
    app.state.webhooks = dispatcher
    slack_app = None
    if app.state.slack is not None and app.state.slack.app:
        config = app.state.slack
        if config.dashboard_url is None and settings.public_url:
            config = dataclasses.replace(config, dashboard_url=settings.public_url.rstrip("/"))
        slack_app = SlackApp(governor.store, governor.hub, config)
        await slack_app.start()
    return Notifiers(dispatcher, slack_app)
