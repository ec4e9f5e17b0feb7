"""Alerts through Apprise (Telegram, Signal, Matrix, ntfy, Teams, ... ), via the same outbox.

Apprise services know nothing of idempotency keys: a resend after a crash between "sent" and
"marked sent" can show twice there (at-least-once; see README "Alerts")."""

from __future__ import annotations

import os

from monitor.alert.message import AlertMessage, DeliveryError, Renderer, SendResult
from monitor.config import AppriseConfig


class AppriseSender:
    def __init__(self, channel: str, config: AppriseConfig, renderer: Renderer) -> None:
        self.channel = channel
        self.config = config
        self.renderer = renderer

    def _url(self) -> str:
        if self.config.url_env:
            value = os.environ.get(self.config.url_env)
            if not value:
                raise DeliveryError(f"apprise: the environment variable {self.config.url_env} is not set")
            return value
        return self.config.url or ""

    async def send(self, message: AlertMessage) -> SendResult:
        import apprise

        notifier = apprise.Apprise()
        # The URL carries the service's tokens: it never appears in an error message.
        if not notifier.add(self._url()):
            raise DeliveryError(
                f"apprise: {self.channel}: the URL is not one Apprise understands", permanent=True
            )
        title, body = self.renderer.title_and_body(message)
        ok = await notifier.async_notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        if not ok:
            raise DeliveryError(f"apprise: {self.channel}: the service did not accept the notification")
        return SendResult()
