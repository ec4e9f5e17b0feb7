"""Email alerts against a real SMTP server (aiosmtpd) on 127.0.0.1: content, headers, multipart,
STARTTLS with a certificate made in the test, AUTH with secrets from the environment (never in the
logs), a server that is down and comes back, and hostile feed text."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from monitor.config import load_config
from monitor.store import Store
from monitor.store.outbox import Outbox
from tests.alert_helpers import SMTPReceiver, add_developments, free_port, wait_for
from tests.conftest import STORY, Project
from tests.test_alert_webhook import FAST_RETRY, deliver

PASSWORD = "Geheim-Passwort-4711!"


def _email_config(project: Project, port: int, **email: Any) -> Any:
    project.write(
        {
            "feeds": [],
            "stories": [STORY],
            "alerts": {
                "email": {
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "none",
                    "from": "story-monitor <monitor@example.org>",
                    "to": ["analyst@example.org", "desk@example.org"],
                    **email,
                },
                "retry": FAST_RETRY,
            },
        }
    )
    return load_config(project.config_path)


def _parts(msg: Any) -> tuple[str, str]:
    plain = msg.get_body(preferencelist=("plain",)).get_content()
    html = msg.get_body(preferencelist=("html",)).get_content()
    return plain, html


def test_multipart_email_with_headers_sources_and_highlighting(project: Project) -> None:
    with SMTPReceiver() as smtp:
        config = _email_config(project, smtp.port)
        store = Store(config.database)
        add_developments(
            store,
            ["email"],
            ["Gipfel in Budapest auf Eis gelegt"],
            novel=[["Das Treffen in Budapest wurde überraschend auf Eis gelegt."]],
        )
        report = deliver(config)
        assert report.sent == 1
        (msg,) = smtp.messages
        row = Outbox(store).list()[0]
    assert msg["Subject"] == "[budapest-summit] Gipfel in Budapest auf Eis gelegt"
    assert msg["From"] == "story-monitor <monitor@example.org>"
    assert msg["To"] == "analyst@example.org, desk@example.org"
    assert smtp.envelopes[0][:2] == ("monitor@example.org", ["analyst@example.org", "desk@example.org"])
    assert msg["Message-ID"] == f"<{row.idempotency_key.replace(':', '.')}@example.org>"
    assert msg["X-Story-Monitor-Key"] == row.idempotency_key
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get("List-Unsubscribe") is None
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = _parts(msg)
    assert "Das Treffen in Budapest wurde überraschend auf Eis gelegt." in plain
    assert "Testquelle" in plain and "http" not in plain  # link-free plain text
    assert 'href="https://example.org/artikel/' in html
    # Words the baseline lacks are highlighted; words it has are not.
    assert "<mark>überraschend</mark>" in html
    assert "<mark>Budapest</mark>" not in html


def test_starttls_with_auth_from_env_and_no_secrets_in_logs(project: Project, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with SMTPReceiver(tls_context=server_ctx, credentials=("monitor", PASSWORD)) as smtp:
        config = _email_config(
            project,
            smtp.port,
            security="starttls",
            username_env="SMTP_USER",
            password_env="SMTP_PASSWORD",
            ca_file=str(ca_file),
        )
        store = Store(config.database)
        add_developments(store, ["email"], ["Kreml warnt vor Tomahawk-Lieferung"])
        env = {"SMTP_USER": "monitor", "SMTP_PASSWORD": PASSWORD}
        result = project.cli("--log-level", "debug", "alerts", "deliver", "--json", env=env)
        assert result.exit_code == 0, result.stderr
        assert result.json()["sent"] == 1
        assert len(smtp.messages) == 1
        assert smtp.envelopes[0][2] is True  # authenticated (over TLS: the server requires it)
        # A wrong password fails (and is retried), never leaking either password.
        add_developments(store, ["email"], ["Orbán bietet Budapest an"])
        bad = project.cli(
            "--log-level", "debug", "alerts", "deliver", env={**env, "SMTP_PASSWORD": "falsch-123"}
        )
        assert bad.exit_code == 1
        assert len(smtp.messages) == 1
    output = result.stdout + result.stderr + bad.stdout + bad.stderr
    for secret in (PASSWORD, "falsch-123"):
        assert secret not in output
        assert base64.b64encode(secret.encode()).decode() not in output
        assert base64.b64encode(f"\0monitor\0{secret}".encode()).decode() not in output
    assert "authentication failed" in Outbox(store).list(["pending"])[0].last_error
    # The YAML holds only the variables' names.
    assert PASSWORD not in project.config_path.read_text()


def test_starttls_refuses_an_untrusted_certificate(project: Project) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    with SMTPReceiver(tls_context=server_ctx) as smtp:
        config = _email_config(project, smtp.port, security="starttls")  # system CAs only
        add_developments(Store(config.database), ["email"], ["Gipfel abgesagt"])
        report = deliver(config, drain=False)
        assert report.failed == 1 and not smtp.messages
        assert "CERTIFICATE_VERIFY_FAILED" in report.errors[0] or "certificate" in report.errors[0].lower()


def test_smtp_down_then_up_everything_arrives_once(project: Project) -> None:
    port = free_port()
    config = _email_config(project, port)
    store = Store(config.database)
    titles = [f"Entwicklung {i}" for i in range(4)]
    add_developments(store, ["email"], titles)
    # Server down: the first attempt fails, the channel backs off, nothing is lost.
    report = deliver(config)
    assert report.sent == 0 and report.failed == 1
    assert Outbox(store).counts() == {"pending": 4}
    with SMTPReceiver(port=port) as smtp:
        from tests.test_alert_webhook import deliver_until

        deliver_until(config, lambda: Outbox(store).counts() == {"sent": 4})
        # One more pass after everything is sent: nothing more arrives.
        deliver(config)
        subjects = [m["Subject"] for m in smtp.messages]
    assert subjects == [f"[budapest-summit] {t}" for t in titles]
    assert len({m["Message-ID"] for m in smtp.messages}) == 4


def test_a_recipient_refused_for_now_gets_the_alert_later_and_the_others_once(project: Project) -> None:
    """The server takes the message for one recipient and answers 450 (busy, greylisting) for the
    other: the second gets it on a retry, to it alone, with the same Message-ID; a recipient
    refused for good (550) is recorded, not retried."""
    with SMTPReceiver() as smtp:
        config = _email_config(
            project, smtp.port, to=["analyst@example.org", "desk@example.org", "gone@example.org"]
        )
        store = Store(config.database)
        add_developments(store, ["email"], ["Gipfel in Budapest abgesagt"])
        smtp.refuse = {
            "desk@example.org": ["450 4.2.1 Mailbox busy", "451 4.7.1 Greylisted"],
            "gone@example.org": ["550 5.1.1 No such user"],
        }

        first = deliver(config, drain=False)
        assert first.failed == 1 and first.sent == 0
        assert [rcpts for _, rcpts, _ in smtp.envelopes] == [["analyst@example.org"]]
        (row,) = Outbox(store).list()
        assert row.status == "pending" and "desk@example.org: 450" in (row.last_error or "")
        assert "gone@example.org: 550" in (row.last_error or "")

        wait_for(lambda: deliver(config, drain=False).sent == 1, what="the retries to reach desk@")

    # The second attempt, to desk@ alone, was refused as a whole (451): no message that time.
    assert [rcpts for _, rcpts, _ in smtp.envelopes] == [["analyst@example.org"], ["desk@example.org"]]
    ids = {m["Message-ID"] for m in smtp.messages}
    assert len(ids) == 1  # one message, delivered in parts
    (row,) = Outbox(store).list()
    assert row.status == "sent" and row.attempts == 3
    attempts = Outbox(store).attempts(row.id)
    assert [a.outcome for a in attempts] == ["partial", "failed", "sent"]
    assert "gone@example.org: 550" in (attempts[0].error or "")


def test_hostile_feed_text_cannot_alter_headers_or_inject_markup(project: Project) -> None:
    hostile_title = "Gipfel\r\nBcc: victim@example.net\r\nX-Evil: 1\n<script>alert(1)</script>"
    hostile_sentence = '<img src=x onerror="alert(2)"> Neue Fakten </ul><a href="javascript:evil()">klick</a>'
    with SMTPReceiver() as smtp:
        config = _email_config(project, smtp.port)
        store = Store(config.database)
        add_developments(store, ["email"], [hostile_title], novel=[[hostile_sentence]])
        # The source item: a javascript: URL must not become a link.
        with store.session() as session:
            from sqlalchemy import update

            from monitor.store.models import Item

            session.execute(update(Item).values(url="javascript:alert(3)", title="<b>Quelle</b>"))
            session.commit()
        assert deliver(config).sent == 1
        (msg,) = smtp.messages
        rcpts = smtp.envelopes[0][1]
    assert rcpts == ["analyst@example.org", "desk@example.org"]  # no Bcc smuggled in
    assert msg.get("Bcc") is None and msg.get("X-Evil") is None
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Subject"].startswith("[budapest-summit] Gipfel Bcc: victim@example.net X-Evil: 1")
    plain, html = _parts(msg)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Escaped (highlighting may wrap single words of it in <mark>: look past those tags).
    unmarked = html.replace("<mark>", "").replace("</mark>", "")
    assert "<img" not in html and "&lt;img src=x" in unmarked
    assert "javascript:" not in html.replace("&quot;javascript:evil()&quot;", "")
    assert "<b>Quelle</b>" not in html and "&lt;b&gt;Quelle&lt;/b&gt;" in html
    assert 'href="javascript' not in html
    assert "<script>alert(1)</script>" in plain  # plain text carries it as text, harmlessly


def test_email_renders_source_down_notice(project: Project) -> None:
    with SMTPReceiver() as smtp:
        config = _email_config(project, smtp.port)
        store = Store(config.database)
        store.create_schema()
        store.sync_feeds([("Der Standard", "https://www.derstandard.at/rss")])
        with store.poll_transaction("Der Standard") as tx:
            tx.enqueue(
                [
                    {
                        "idempotency_key": "source_down-Der Standard-1-email",
                        "channel": "email",
                        "kind": "source_down",
                        "feed_id": tx.state.id,
                        "payload": {
                            "feed": "Der Standard",
                            "url": "https://www.derstandard.at/rss",
                            "error": "timeout: read timed out <b>",
                            "since": "2025-10-20T08:00:00Z",
                        },
                    }
                ]
            )
        assert deliver(config).sent == 1
        (msg,) = smtp.messages
    assert msg["Subject"] == "[story-monitor] Quelle ausgefallen: Der Standard"
    assert msg["X-Story-Monitor-Event"] == "source_down"
    plain, html = _parts(msg)
    assert "timeout: read timed out <b>" in plain and "read timed out &lt;b&gt;" in html
    assert "20.10.2025 10:00" in plain  # shown in Europe/Berlin


@pytest.mark.parametrize("bad", ["{nope}", "{title"])
def test_subject_template_is_validated(project: Project, bad: str) -> None:
    from monitor.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"alerts.email.subject"):
        parse_config(
            "alerts:\n  email: {host: h, from: a@b.example, to: [x@y.example], subject: '" + bad + "'}\n"
        )
