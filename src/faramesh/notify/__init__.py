"""Notifications to people: signed outgoing webhooks (JSON or Slack Block Kit) and
Slack's Approve / Deny buttons.

`start(app, governor, settings)` loads the configured files and starts the delivery
dispatcher; the server calls it in its lifespan and `stop()`s the result on exit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faramesh.notify.dispatcher import WebhookDispatcher
from faramesh.notify.slack import SlackConfig, load_slack_config
from faramesh.notify.webhooks import Webhook, load_webhook_file, verify_signature

if TYPE_CHECKING:
    from faramesh.config import Settings
    from faramesh.service import Governor

__all__ = [
    "SlackConfig",
    "Webhook",
    "WebhookDispatcher",
    "load_slack_config",
    "load_webhook_file",
    "start",
    "verify_signature",
]


async def start(app: Any, governor: Governor, settings: Settings) -> WebhookDispatcher:
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
    )
    await dispatcher.start()
    app.state.webhooks = dispatcher
    return dispatcher
