"""Webhook alerts (httpx), signed with the Standard Webhooks scheme.

Headers: ``webhook-id`` (the delivery's idempotency key: the same on every retry, so receivers
deduplicate by it), ``webhook-timestamp`` (Unix seconds of this attempt) and, when ``secret_env``
names a ``whsec_...`` secret, ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
Receivers verify with the ``standardwebhooks`` package or Svix's libraries (see README "Alerts").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import httpx

from monitor.alert.message import AlertMessage, DeliveryError, Renderer, SendResult, payload, safe_url
from monitor.config import WebhookConfig
from monitor.fetch import parse_retry_after  # the same header, the same rules as for feeds

# 4xx answers that a retry of the same body cannot fix. Others (401/403/404 during a receiver's
# redeploy, 408, 409, 425, 429) are retried until the attempt budget runs out. A permanent redirect
# (301, 308) is one too: the receiver moved, the config has to say where (redirects are not
# followed: a signed body must not be posted to wherever a response points).
PERMANENT_STATUS = {301, 308, 400, 405, 410, 411, 413, 414, 415, 422}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``."""
    raw = secret.strip()
    if raw.startswith("whsec_"):
        raw = raw[len("whsec_") :]
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise DeliveryError("webhook: the secret is not 'whsec_' followed by base64") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _mrkdwn(text: str) -> str:
    """Slack escaping: only &, < and > are control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(message: AlertMessage, renderer: Renderer) -> dict[str, Any]:
    title, text = renderer.title_and_body(message)
    lines = [f"*{_mrkdwn(title)}*"]
    for dev in message.developments:
        if message.kind == "digest":
            lines.append(f"*{_mrkdwn(dev['title'])}*")
        lines += [f"• {_mrkdwn(s)}" for s in dev["novel"][:5]]
        for src in dev.get("sources", [])[:10]:
            url = safe_url(src.get("url"))
            label = _mrkdwn(f"{src.get('feed') or ''}: {src.get('title') or ''}").replace("|", "¦")
            lines.append(f"  ◦ <{url}|{label}>" if url else f"  ◦ {label}")
    if message.feed:
        lines.append(_mrkdwn(text.split("\n--\n")[0]))
    return {
        "text": _mrkdwn(title),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}],
    }


def teams_body(message: AlertMessage, renderer: Renderer) -> dict[str, Any]:
    """An Adaptive Card message (Teams workflows / incoming webhooks). TextBlocks are plain text
    here (no markdown links from feed text)."""
    title, text = renderer.title_and_body(message)
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": True}]
    body.append({"type": "TextBlock", "text": text.split("\n--\n")[0][:4000], "wrap": True})
    actions = []
    for dev in message.developments[:1]:
        for src in dev.get("sources", [])[:5]:
            url = safe_url(src.get("url"))
            if url:
                actions.append(
                    {"type": "Action.OpenUrl", "title": (src.get("feed") or "Quelle")[:40], "url": url}
                )
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "actions": actions,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def render_body(config: WebhookConfig, message: AlertMessage, renderer: Renderer) -> bytes:
    if config.format == "slack":
        data = slack_body(message, renderer)
    elif config.format == "teams":
        data = teams_body(message, renderer)
    else:
        data = payload(message)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class WebhookSender:
    def __init__(
        self,
        channel: str,
        config: WebhookConfig,
        renderer: Renderer,
        client: httpx.AsyncClient,
        user_agent: str,
    ) -> None:
        self.channel = channel
        self.config = config
        self.renderer = renderer
        self.client = client
        self.user_agent = user_agent

    def headers(self, message: AlertMessage, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        cfg = self.config
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "user-agent": self.user_agent,
            **cfg.headers,
        }
        for name, env_name in cfg.headers_env.items():
            value = os.environ.get(env_name)
            if value is None:
                raise DeliveryError(
                    f"webhook: the environment variable {env_name} (header {name}) is not set"
                )
            if any(c in value for c in "\r\n\0"):
                raise DeliveryError(f"webhook: the environment variable {env_name} contains a line break")
            headers[name] = value
        # The signing headers last: a configured header cannot override them.
        headers["webhook-id"] = message.idempotency_key
        headers["webhook-timestamp"] = str(timestamp)
        if cfg.secret_env:
            secret = os.environ.get(cfg.secret_env)
            if secret is None:
                raise DeliveryError(f"webhook: the environment variable {cfg.secret_env} (secret) is not set")
            headers["webhook-signature"] = sign(secret_key(secret), message.idempotency_key, timestamp, body)
        return headers

    async def send(self, message: AlertMessage) -> SendResult:
        body = render_body(self.config, message, self.renderer)
        headers = self.headers(message, body)
        try:
            response = await self.client.post(
                self.config.url, content=body, headers=headers, timeout=self.config.timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(status_code=status)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        moved = ""
        if 300 <= status < 400:
            location = " ".join(response.headers.get("location", "").split())[:200] or "none given"
            moved = f" (Location: {location}; redirects are not followed, set the new url)"
        raise DeliveryError(
            f"webhook: the receiver answered {status}{moved}",
            permanent=status in PERMANENT_STATUS,
            retry_after=retry_after,
            status_code=status,
        )
