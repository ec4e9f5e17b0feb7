"""Email alerts over SMTP (aiosmtplib): multipart text + HTML, Message-ID from the idempotency key.

Credentials come from the environment variables the config names (``username_env`` /
``password_env``); they are never logged and never part of an error message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from monitor.alert.message import AlertMessage, DeliveryError, Renderer, SendResult, header_text
from monitor.config import EmailConfig
from monitor.store.models import utcnow

log = logging.getLogger(__name__)


def message_id(key: str, sender: str) -> str:
    """``<key@sender-domain>``: the same delivery always gets the same Message-ID, so a resend
    after a crash is recognisable as the same message by servers and mail clients."""
    local = re.sub(r"[^A-Za-z0-9._-]", ".", key).strip(".") or "alert"
    if len(local) > 64:
        local = local[:40] + "." + hashlib.sha256(key.encode()).hexdigest()[:16]
    domain = parseaddr(sender)[1].rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9.-]+", domain or ""):
        domain = "story-monitor.invalid"
    return f"<{local}@{domain}>"


def build_email(config: EmailConfig, message: AlertMessage, renderer: Renderer) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = header_text(config.sender, 500)
    msg["To"] = ", ".join(header_text(a, 500) for a in config.to)
    msg["Subject"] = renderer.subject(message, config.subject)
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id(message.idempotency_key, config.sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to alerts
    msg["X-Story-Monitor-Event"] = message.kind
    msg["X-Story-Monitor-Key"] = header_text(message.idempotency_key, 500)
    msg.set_content(renderer.text(message), subtype="plain", charset="utf-8")
    msg.add_alternative(renderer.html(message), subtype="html", charset="utf-8")
    return msg


def _secret(env_name: str | None, what: str) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise DeliveryError(f"email: the environment variable {env_name} ({what}) is not set")
    return value


class EmailSender:
    def __init__(self, channel: str, config: EmailConfig, renderer: Renderer) -> None:
        self.channel = channel
        self.config = config
        self.renderer = renderer

    def _tls_context(self) -> ssl.SSLContext:
        return (
            ssl.create_default_context(cafile=self.config.ca_file)
            if self.config.ca_file
            else (ssl.create_default_context())
        )

    async def send(self, message: AlertMessage) -> SendResult:
        cfg = self.config
        username = _secret(cfg.username_env, "username")
        password = _secret(cfg.password_env, "password")
        email_message = build_email(cfg, message, self.renderer)
        sender_addr = parseaddr(cfg.sender)[1]
        recipients = list(message.recipients) or [parseaddr(a)[1] for a in cfg.to]
        try:
            Address(addr_spec=sender_addr)
        except Exception as exc:
            raise DeliveryError(f"email: invalid sender address: {exc}", permanent=True) from None
        try:
            refused, response = await aiosmtplib.send(
                email_message,
                sender=sender_addr,
                recipients=recipients,
                hostname=cfg.host,
                port=cfg.port,
                username=username,
                password=password,
                use_tls=cfg.security == "ssl",
                start_tls=cfg.security == "starttls",
                tls_context=self._tls_context() if cfg.security != "none" else None,
                timeout=cfg.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = bool(codes) and all(500 <= c < 600 for c in codes)
            raise DeliveryError(
                f"email: all recipients refused ({', '.join(f'{r.recipient}: {r.code}' for r in exc.recipients)})",
                permanent=permanent,
                status_code=codes[0] if codes else None,
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Retryable: the fix (a corrected secret) needs no change to the queued alerts.
            raise DeliveryError(f"email: authentication failed: {exc.code}", status_code=exc.code) from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            raise DeliveryError(
                f"email: server refused the message: {exc.code} {header_text(exc.message)}",
                permanent=500 <= exc.code < 600,
                status_code=exc.code,
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"email: server answered {exc.code} {header_text(exc.message)}", status_code=exc.code
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {header_text(str(exc))}") from None
        if not refused:
            return SendResult(status_code=250, detail=header_text(str(response)))
        # The server took the message for some recipients and refused the others: those refused
        # for now (4xx: greylisting, a full or busy mailbox) get it on a retry, to them alone; a
        # permanent refusal (5xx) is recorded.
        later = tuple(r for r in recipients if r in refused and 400 <= refused[r][0] < 500)
        described = ", ".join(
            f"{r}: {code} {header_text(text)}" for r, (code, text) in sorted(refused.items())
        )
        log.warning("email: some recipients refused", extra={"channel": self.channel, "refused": described})
        return SendResult(
            status_code=250,
            detail=header_text(str(response)),
            retry_recipients=later,
            refused=f"email: recipients refused ({described})",
        )
