"""Fetch stage: one shared ``httpx.AsyncClient``, bounded concurrency, conditional GET, limits.

Only this module talks HTTP. It returns a ``FetchResult`` for every attempt and never raises for
what a server does (errors are data: kind + message), so one broken feed cannot stop a poll.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

from monitor.config import FetchConfig

log = logging.getLogger(__name__)

ACCEPT_FEEDS = (
    "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, */*;q=0.8"
)
PERMANENT_REDIRECTS = {301, 308}
REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(slots=True)
class FetchResult:
    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    permanent_redirect: str | None = None  # new URL when every hop was 301/308
    error_kind: str | None = None  # timeout | connect | http | too_large | redirects | invalid
    error: str | None = None
    elapsed: float = 0.0
    retry_after: float | None = None  # seconds, from Retry-After
    max_age: float | None = None  # seconds, from Cache-Control max-age / Expires

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def ok(self) -> bool:
        return self.error_kind is None and self.status is not None and 200 <= self.status < 300


def user_agent(config: FetchConfig) -> str:
    if config.contact_url and config.contact_url not in config.user_agent:
        return f"{config.user_agent} (+{config.contact_url})"
    return config.user_agent


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def parse_max_age(headers: httpx.Headers) -> float | None:
    cache_control = headers.get("cache-control", "")
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value.strip())
    expires = headers.get("expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires)
            date = (
                email.utils.parsedate_to_datetime(headers["date"]) if "date" in headers else datetime.now(UTC)
            )
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            if date.tzinfo is None:
                date = date.replace(tzinfo=UTC)
            return max(0.0, (when - date).total_seconds())
        except (TypeError, ValueError, KeyError):
            return None
    return None


class BodyTooLarge(Exception):
    pass


class AddressNotAllowed(Exception):
    """A URL from feed content points at a private, loopback or link-local address."""


async def check_public_url(url: str) -> None:
    """Raise ``AddressNotAllowed`` unless ``url`` is http(s) and every address its host resolves to
    is public. Checked after DNS resolution, so a public name pointing at 10.x is refused too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressNotAllowed(f"only http(s) URLs are fetched, not {url!r}")
    host = parts.hostname
    try:
        infos = await anyio.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise AddressNotAllowed(f"cannot resolve {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise AddressNotAllowed(
                f"{url!r} resolves to the non-public address {address} "
                "(set fetch.allow_private_addresses: true to allow it)"
            )


class Fetcher:
    """Owns the HTTP client. Use as ``async with Fetcher(config) as fetcher``."""

    def __init__(self, config: FetchConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._global = asyncio.Semaphore(config.concurrency)
        self._per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(config.per_host)
        )

    async def __aenter__(self) -> Fetcher:
        limits = httpx.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
            keepalive_expiry=30.0,
        )
        timeout = httpx.Timeout(self.config.timeout, connect=self.config.connect_timeout)
        self._client = httpx.AsyncClient(
            http2=True,
            limits=limits,
            timeout=timeout,
            follow_redirects=False,  # followed by hand: permanent redirects and address checks
            headers={"User-Agent": user_agent(self.config), "Accept-Encoding": "gzip, deflate, br"},
            transport=self._transport,
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch_feed(
        self, url: str, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        headers = {"Accept": ACCEPT_FEEDS}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return await self.get(url, headers)

    async def fetch_article(self, url: str) -> FetchResult:
        """GET an article page linked from a feed (untrusted URL): only http(s), and no private,
        loopback or link-local address (on every redirect hop) unless allowed in the config."""
        return await self.get(url, {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"}, untrusted=True)

    async def get(
        self, url: str, headers: dict[str, str] | None = None, *, untrusted: bool = False
    ) -> FetchResult:
        """GET ``url`` following redirects by hand, within the configured limits."""
        assert self._client is not None, "use 'async with Fetcher(...)'"
        host = urlsplit(url).hostname or ""
        result = FetchResult(url=url, final_url=url)
        started = time.perf_counter()
        async with self._global, self._per_host[host]:
            try:
                with anyio.fail_after(self.config.timeout):
                    await self._get_following(url, headers or {}, result, untrusted)
            except TimeoutError:
                result.error_kind, result.error = (
                    "timeout",
                    f"no complete answer within {self.config.timeout:g}s",
                )
            except httpx.TimeoutException as exc:
                result.error_kind, result.error = "timeout", f"{type(exc).__name__}: {exc}"
            except BodyTooLarge as exc:
                result.error_kind, result.error = "too_large", str(exc)
            except AddressNotAllowed as exc:
                result.error_kind, result.error = "forbidden_address", str(exc)
            except (httpx.ConnectError, httpx.NetworkError, httpx.RemoteProtocolError, OSError) as exc:
                result.error_kind, result.error = "connect", f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:
                result.error_kind, result.error = "http", f"{type(exc).__name__}: {exc}"
        result.elapsed = time.perf_counter() - started
        return result

    async def _get_following(
        self, url: str, headers: dict[str, str], result: FetchResult, untrusted: bool
    ) -> None:
        assert self._client is not None
        all_permanent = True
        current = url
        for _hop in range(self.config.max_redirects + 1):
            if untrusted and not self.config.allow_private_addresses:
                await check_public_url(current)
            async with self._client.stream("GET", current, headers=headers) as response:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    target = urljoin(current, response.headers["location"])
                    if urlsplit(target).scheme not in ("http", "https"):
                        result.status = response.status_code
                        result.error_kind, result.error = "invalid", f"redirect to a non-http URL {target!r}"
                        return
                    all_permanent = all_permanent and response.status_code in PERMANENT_REDIRECTS
                    current = target
                    result.final_url = current
                    continue
                result.status = response.status_code
                result.final_url = current
                result.content_type = response.headers.get("content-type")
                result.etag = response.headers.get("etag")
                result.last_modified = response.headers.get("last-modified")
                result.retry_after = parse_retry_after(response.headers.get("retry-after"))
                result.max_age = parse_max_age(response.headers)
                if current != url and all_permanent:
                    result.permanent_redirect = current
                if response.status_code == 304:
                    return
                if response.status_code >= 400:
                    result.error_kind = "http"
                    result.error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                    return
                result.body = await self._read_capped(response)
                return
        result.error_kind, result.error = "redirects", f"more than {self.config.max_redirects} redirects"

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.config.max_bytes
        declared = response.headers.get("content-length")
        if (
            declared
            and declared.isdigit()
            and int(declared) > cap
            and not response.headers.get("content-encoding")
        ):
            raise BodyTooLarge(f"response of {int(declared)} bytes exceeds fetch.max_bytes ({cap})")
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes yields *decoded* bytes, so the cap also stops decompression bombs early.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise BodyTooLarge(f"response exceeds fetch.max_bytes ({cap} bytes) after decoding")
            chunks.append(chunk)
        return b"".join(chunks)
