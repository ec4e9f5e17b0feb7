"""One rule for which URLs from feed content become links (dashboard, exports, email, webhooks)."""

from __future__ import annotations

import pytest

from monitor.alert import message
from monitor.links import safe_url
from monitor.web import views


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.tagesschau.de/ausland/gipfel-budapest-100.html",
            "https://www.tagesschau.de/ausland/gipfel-budapest-100.html",
        ),
        ("  HTTP://example.org/a?b=c  ", "HTTP://example.org/a?b=c"),
        ("javascript:alert(1)", None),
        ("data:text/html,<b>x</b>", None),
        ("/relative/path", None),
        ("https:///no-host", None),
        ('https://example.org/"onmouseover="x', None),
        ("https://example.org/a b", None),
        ("https://example.org/<script>", None),
        ("http://[::1/kaputt", None),
        ("ftp://example.org/feed.xml", None),
        (None, None),
        (42, None),
        ("", None),
    ],
)
def test_safe_url(url: object, expected: str | None) -> None:
    assert safe_url(url) == expected
    # the dashboard and the alert channels use this very function
    assert views.safe_url is safe_url and message.safe_url is safe_url
