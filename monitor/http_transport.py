"""The HTTP wire under the fetch stage: httpx's API on aiohttp's connection pool and C parser.

Why: a poll is hundreds of small conditional GETs, most answered ``304 Not Modified``, so the CPU
spent per request bounds how fast a poll can be. httpx's own wire (httpcore, h11, anyio) costs about
1 ms of CPU per request here; aiohttp's (C HTTP parser, a pool that does not re-examine every idle
connection per request, plain asyncio) about half of that, measured over the same 500 conditional
requests through the same ``Fetcher`` (bench/README.md). httpx stays the API and the transport seam
(``httpx.AsyncBaseTransport``): redirects, size caps, timeouts and errors are handled in
monitor/fetch.py for every transport alike.

aiohttp speaks HTTP/1.1 only; keep-alive connections are reused across the feeds of a host.
``fetch.http2: true`` selects httpx's own wire with HTTP/2 instead (monitor/http_pool.py).

Untrusted URLs (article links from feed content) get a session whose resolver refuses non-public
addresses: the connection can only go to an address that was checked, so a name that resolves to a
public address for the check and to a private one a moment later (DNS rebinding) cannot reach the
private one.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
from yarl import URL


def _import_aiohttp() -> ModuleType:
    """``import aiohttp``, without loading the system's CA store twice for nothing.

    aiohttp builds two default TLS contexts when it is imported (its design: no blocking I/O in
    the event loop later), which loads the CA store each time: ~50 ms of every ``monitor`` start.
    This transport passes its own context with every https request (``_ssl_for``), so aiohttp's
    defaults are never used; they are built here without certificates. That fails closed: a
    request that did reach the verified default would fail verification, never skip it. The two
    ``SSLContext`` methods are restored before this returns (tests/test_http_transport.py).
    """
    if "aiohttp" in sys.modules:
        return sys.modules["aiohttp"]
    names = ("load_default_certs", "set_default_verify_paths")
    own = {name: vars(ssl.SSLContext).get(name) for name in names}  # None: inherited from C

    def skip(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        return None

    for name in names:
        setattr(ssl.SSLContext, name, skip)
    try:
        import aiohttp
    finally:
        for name, method in own.items():
            if method is None:
                delattr(ssl.SSLContext, name)
            else:
                setattr(ssl.SSLContext, name, method)
    return aiohttp


if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = _import_aiohttp()

# Response header limits: aiohttp's defaults (8 KiB per line) refuse some real servers' long
# Set-Cookie / Content-Security-Policy headers; a lying server is still bounded.
MAX_LINE = 64 * 1024
MAX_HEADERS = 256
CHUNK = 64 * 1024


class CheckedResolver(aiohttp.ThreadedResolver):
    """Resolves like the default resolver, then refuses the answer if ``check`` raises for any
    address (``check(host, address)``); see monitor/fetch.py ``_check_address``."""

    def __init__(self, check: Callable[[str, str], None]) -> None:
        super().__init__()
        self._check = check

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[Any]:
        answers = await super().resolve(host, port, family)
        for answer in answers:
            self._check(host, answer["host"])
        return answers


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends requests through one ``aiohttp.ClientSession``.

    The session is created on first use, inside the running event loop (aiohttp binds to it).
    ``address_check`` (optional) vets every resolved address before a connection is made.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        address_check: Callable[[str, str], None] | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._address_check = address_check
        self._session: aiohttp.ClientSession | None = None
        self._ssl_context: ssl.SSLContext | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,  # the fetch stage bounds requests per host itself
            keepalive_timeout=self._keepalive_expiry,
            ttl_dns_cache=60,
            resolver=CheckedResolver(self._address_check) if self._address_check else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies, if any, are httpx's business
            auto_decompress=False,  # decoded in the fetch stage, under its size cap
            trust_env=False,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
            # httpx sends Host, Accept, Accept-Encoding and User-Agent itself; add nothing.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
        )

    def _ssl_for(self, url: httpx.URL) -> ssl.SSLContext | bool:
        if url.scheme != "https":
            return True  # aiohttp's "default", unused for http://
        if self._ssl_context is None:
            # The same CA bundle as httpx (certifi), loaded only when an https URL is fetched.
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open_session()
        timeout = request.extensions.get("timeout", {})
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body = await request.aread() if request.method not in ("GET", "HEAD") else None
        with _mapped_errors():
            response = await self._session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                ssl=self._ssl_for(request.url),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk

    async def aclose(self) -> None:
        # A body read to the end returns the connection to the pool; one left unread (a size cap
        # hit, a 304 with a stray body) closes it rather than reuse a connection mid-response.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class _mapped_errors:
    """aiohttp's exceptions as the httpx exceptions the fetch stage classifies (timeout, connect,
    protocol), with aiohttp's message kept."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, aiohttp.ClientError | TimeoutError):
            return False
        mapped: type[httpx.HTTPError | httpx.InvalidURL]
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            mapped = httpx.ConnectTimeout
        elif isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
            mapped = httpx.ReadTimeout
        elif isinstance(exc, aiohttp.ClientConnectorError):
            mapped = httpx.ConnectError
        elif isinstance(
            # cut off mid-response, a bad body framing, a malformed status line or header
            exc,
            aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
        ):
            mapped = httpx.RemoteProtocolError
        elif isinstance(exc, aiohttp.InvalidURL):
            mapped = httpx.InvalidURL
        elif isinstance(exc, aiohttp.ClientOSError):
            mapped = httpx.ReadError
        else:
            mapped = httpx.TransportError
        message = str(exc) or type(exc).__name__
        if isinstance(exc, aiohttp.ClientResponseError):
            message = exc.message or message
        raise mapped(message) from exc
