"""Which URLs from feed content may become links (dashboard hrefs, Atom/JSON exports, email and
webhook messages): one rule for every place a link is rendered."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

# http(s), a host, and nothing that could end an attribute or a Markdown/Slack link early.
_LINKABLE = re.compile(r"^https?://[^\s\"'<>]+$", re.IGNORECASE)


def safe_url(url: Any) -> str | None:
    """``url`` stripped when it is an http(s) URL with a host and no whitespace, quotes or angle
    brackets; None otherwise (``javascript:``, ``data:``, relative links, non-strings)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not _LINKABLE.match(url):
        return None
    try:
        if not urlsplit(url).netloc:
            return None
    except ValueError:  # "http://[::1/x"
        return None
    return url
