"""The default wire (monitor/http_transport.py): httpx's API over aiohttp, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import httpx
import pytest

from monitor.config import FetchConfig
from monitor.fetch import AddressNotAllowed, Fetcher, _check_address
from monitor.http_transport import AiohttpTransport
from tests.servers import FeedServer

# In a fresh interpreter: nothing else has imported aiohttp there.
IMPORT_AND_REPORT = """
import json, ssl
import monitor.http_transport
import aiohttp.connector as connector
verified = connector._SSL_CONTEXT_VERIFIED
print(json.dumps({
    "restored": ssl.SSLContext.load_default_certs.__qualname__ == "SSLContext.load_default_certs"
    and "set_default_verify_paths" not in vars(ssl.SSLContext),
    "system_cas": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "aiohttp_default_cas": verified.cert_store_stats()["x509_ca"],
    "aiohttp_default_verifies": verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname,
}))
"""


def test_importing_the_wire_skips_aiohttps_unused_ca_loading_and_fails_closed() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_REPORT], capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout)
    assert report["restored"]  # the stdlib is as it was for everyone else
    assert report["system_cas"] > 0  # default contexts made afterwards load the CA store again
    # aiohttp's own default (never used: _ssl_for passes a context with every https request)
    # has no CA to trust, and still verifies: a request reaching it would fail, not pass.
    assert report["aiohttp_default_cas"] == 0
    assert report["aiohttp_default_verifies"]


def _feeds(server: FeedServer, n: int) -> list[str]:
    paths = [f"/feed{i}.xml" for i in range(n)]
    for i, path in enumerate(paths):
        server.put(path, f"<rss><channel><title>Feed {i} – Grüße aus Köln</title></channel></rss>")
    return paths


def test_bodies_intact_validators_sent_and_connections_kept_alive() -> None:
    with FeedServer() as server:
        paths = _feeds(server, 40)
        config = FetchConfig(concurrency=8, per_host=8)

        async def main() -> tuple[list, list]:
            async with Fetcher(config) as fetcher:
                first = await _all(fetcher, [(server.url(p), None) for p in paths])
                again = await _all(
                    fetcher, [(server.url(p), r.etag) for p, r in zip(paths, first, strict=True)]
                )
            return first, again

        first, again = anyio.run(main)
    for i, result in enumerate(first):
        assert result.status == 200, result.error
        assert f"Feed {i} – Grüße aus Köln".encode() in result.body
        assert result.etag == server.resources[paths[i]].etag
    assert [r.status for r in again] == [304] * 40
    assert all(r.body is None and r.error is None for r in again)
    conditional = server.requests[40:]
    assert all(r.headers.get("If-None-Match") for r in conditional)
    assert all(r.headers["User-Agent"].startswith("story-monitor/") for r in server.requests)
    # 80 requests, at most 8 at a time: kept-alive connections, not one per request.
    assert len({r.client_port for r in server.requests}) <= 8


async def _all(fetcher: Fetcher, jobs: list[tuple[str, str | None]]) -> list:
    results: list = [None] * len(jobs)

    async def one(i: int, url: str, etag: str | None) -> None:
        results[i] = await fetcher.fetch_feed(url, etag)

    async with anyio.create_task_group() as tg:
        for i, (url, etag) in enumerate(jobs):
            tg.start_soon(one, i, url, etag)
    return results


def test_the_checked_resolver_refuses_before_connecting() -> None:
    """DNS rebinding: the address a connection goes to is the one that was checked. A name that
    resolves to loopback is refused by the resolver itself, so no request reaches the server."""
    with FeedServer() as server:
        server.put("/secret", "intern")
        url = f"http://localhost:{server.port}/secret"

        async def main() -> None:
            transport = AiohttpTransport(address_check=_check_address)
            async with httpx.AsyncClient(transport=transport) as client:
                with pytest.raises(AddressNotAllowed, match="non-public address"):
                    await client.get(url)
            # the same request without the check does reach the server (the test is not vacuous)
            async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
                assert (await client.get(url)).text == "intern"

        anyio.run(main)
        assert len(server.requests_for("/secret")) == 1


def test_http2_option_uses_httpx_own_wire() -> None:
    with FeedServer() as server:
        paths = _feeds(server, 3)

        async def main() -> list:
            async with Fetcher(FetchConfig(http2=True)) as fetcher:
                assert type(fetcher.transport).__name__ == "ShardedTransport"
                return await _all(fetcher, [(server.url(p), None) for p in paths])

        results = anyio.run(main)
    assert [r.status for r in results] == [200, 200, 200]
    assert b"Feed 2" in results[2].body


def test_transport_errors_are_httpx_errors() -> None:
    async def main() -> None:
        async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/unreachable", timeout=2)

    anyio.run(main)


def test_no_cookies_are_kept_between_requests() -> None:
    with FeedServer() as server:
        server.put("/a.xml", "<rss/>", headers={"Set-Cookie": "consent=yes; Path=/"})

        async def main() -> None:
            async with Fetcher(FetchConfig()) as fetcher:
                first = await fetcher.fetch_feed(server.url("/a.xml"))
                second = await fetcher.fetch_feed(server.url("/a.xml"))
            assert first.status == second.status == 200

        anyio.run(main)
        requests = server.requests_for("/a.xml")
        assert len(requests) == 2
        assert "Cookie" not in requests[1].headers and "cookie" not in requests[1].headers


@pytest.fixture
def https_feed(tmp_path):  # type: ignore[no-untyped-def]
    """An HTTPS server on 127.0.0.1 with a certificate from a test CA (trustme); yields
    (url, path of the CA's PEM file)."""
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = "<rss><channel><title>Sicher übertragen</title></channel></rss>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/feed.xml", ca_file
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("http2", [False, True])
def test_https_verifies_certificates(https_feed, monkeypatch: pytest.MonkeyPatch, http2: bool) -> None:  # type: ignore[no-untyped-def]
    url, ca_file = https_feed

    async def fetch() -> object:
        async with Fetcher(FetchConfig(http2=http2)) as fetcher:
            return await fetcher.fetch_feed(url)

    # The test CA is not among the trusted ones: refused, with the reason.
    refused = anyio.run(fetch)
    assert refused.status is None and refused.error_kind == "connect"  # type: ignore[attr-defined]
    assert "certificate" in (refused.error or "").lower()  # type: ignore[attr-defined]
    # SSL_CERT_FILE names the CA bundle to trust (a private CA): fetched.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    fetched = anyio.run(fetch)
    assert fetched.status == 200, fetched.error  # type: ignore[attr-defined]
    assert "Sicher übertragen".encode() in fetched.body  # type: ignore[attr-defined]
