"""The fetch stage against a misbehaving server on 127.0.0.1: timeouts, size caps, decompression
bombs, redirects, politeness headers, per-host concurrency and the address checks for article URLs."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import anyio
import brotli
import pytest

from monitor.fetch import CappedDecoder, Fetcher, FetchResult, check_public_url
from tests.feeds import FakeEntry, rss
from tests.misbehaving import (
    ConcurrencyProbe,
    Streamer,
    fast_fetch_config,
    gzip_bomb,
    hang_after_headers,
    redirect,
    serve_bytes,
    slow_loris,
    status,
)
from tests.servers import FeedServer

FEED = rss([FakeEntry("g1", "Gipfel in Budapest", "Text über den Gipfel.")]).encode()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FeedServer]:
    # One server for the module: FeedServer's shutdown costs half a second per test otherwise.
    with FeedServer() as server:
        yield server


@pytest.fixture
def feed_server(shared_server: FeedServer) -> FeedServer:
    with shared_server._lock:
        shared_server.requests.clear()
        shared_server.handlers.clear()
        shared_server.resources.clear()
    return shared_server


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def fetch(url: str, *, article: bool = False, **config: Any) -> FetchResult:
    async def main() -> FetchResult:
        async with Fetcher(fast_fetch_config(**config)) as fetcher:
            return await (fetcher.fetch_article(url) if article else fetcher.fetch_feed(url))

    return anyio.run(main)


# --- timeouts ------------------------------------------------------------------------------------


def test_slow_loris_hits_the_total_timeout(feed_server: FeedServer, release: threading.Event) -> None:
    # A byte every 50 ms never trips the 0.5 s read timeout; only the 1.5 s total timeout stops it.
    feed_server.route("/loris.xml", slow_loris(release))
    result = fetch(feed_server.url("/loris.xml"), timeout=1.5, read_timeout=0.5)
    assert result.error_kind == "timeout"
    assert "no complete answer within 1.5s" in (result.error or "")
    assert 1.4 <= result.elapsed < 5


def test_hang_after_headers_hits_the_read_timeout(feed_server: FeedServer, release: threading.Event) -> None:
    feed_server.route("/hang.xml", hang_after_headers(release))
    result = fetch(feed_server.url("/hang.xml"), read_timeout=0.5)
    assert result.error_kind == "timeout"
    assert "sent nothing for 0.5s" in (result.error or "")
    assert result.elapsed < 7  # the read timeout, not the 8 s total one


# --- redirects -----------------------------------------------------------------------------------


def test_redirect_loop_stops_at_the_limit(feed_server: FeedServer) -> None:
    for i in range(10):
        feed_server.route(f"/r{i}", redirect(302, f"/r{(i + 1) % 10}"))
    result = fetch(feed_server.url("/r0"))
    assert result.error_kind == "redirects"
    assert "more than 5 redirects" in (result.error or "")
    assert len(feed_server.requests) == 6  # the first request and five redirects, then it gave up


def test_permanent_and_temporary_redirects_are_told_apart(feed_server: FeedServer) -> None:
    feed_server.put("/new.xml", FEED)
    feed_server.route("/old.xml", redirect(301, "/mid.xml"))
    feed_server.route("/mid.xml", redirect(308, "/new.xml"))
    feed_server.route("/temp.xml", redirect(307, "/new.xml"))
    moved = fetch(feed_server.url("/old.xml"))
    assert moved.ok and moved.body == FEED
    assert moved.permanent_redirect == feed_server.url("/new.xml")
    temporary = fetch(feed_server.url("/temp.xml"))
    assert temporary.ok and temporary.final_url == feed_server.url("/new.xml")
    assert temporary.permanent_redirect is None


def test_redirect_to_a_non_http_scheme_is_refused(feed_server: FeedServer) -> None:
    feed_server.route("/evil.xml", redirect(302, "file:///etc/passwd"))
    result = fetch(feed_server.url("/evil.xml"))
    assert result.error_kind == "invalid"
    assert result.body is None


@pytest.mark.parametrize("url", ["http://[::1/artikel", "http://127.0.0.1:99999/artikel"])
def test_a_malformed_article_link_is_an_error_not_an_exception(url: str) -> None:
    for article in (True, False):
        result = fetch(url, article=article)
        assert result.error_kind == "invalid", (article, result)
        assert "invalid URL" in (result.error or "")


# --- size caps and bombs -------------------------------------------------------------------------


def test_50_mb_body_is_cut_off_while_streaming(feed_server: FeedServer) -> None:
    streamer = Streamer(50 * 1024 * 1024)
    feed_server.route("/huge.xml", streamer)
    result = fetch(feed_server.url("/huge.xml"))
    assert result.error_kind == "too_large"
    assert "fetch.max_bytes (262144 bytes)" in (result.error or "")
    assert result.body is None
    # The client hung up long before the server got 50 MB out (socket buffers hold a few MB at most).
    assert streamer.sent < 20 * 1024 * 1024


def test_declared_oversized_body_is_refused_before_reading(feed_server: FeedServer) -> None:
    streamer = Streamer(50 * 1024 * 1024, declare_length=True)
    feed_server.route("/declared.xml", streamer)
    result = fetch(feed_server.url("/declared.xml"))
    assert result.error_kind == "too_large"
    assert "52428800 bytes exceeds fetch.max_bytes" in (result.error or "")


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_decompression_bomb_is_stopped_with_bounded_memory(feed_server: FeedServer, encoding: str) -> None:
    decoded = 256 * 1024 * 1024
    body = gzip_bomb(decoded) if encoding == "gzip" else brotli.compress(b"\x00" * decoded, quality=1)
    assert len(body) < 1024 * 1024  # small on the wire, under the raw cap
    feed_server.route("/bomb.xml", serve_bytes(body, {"Content-Encoding": encoding}))
    tracemalloc.start()
    try:
        result = fetch(feed_server.url("/bomb.xml"), max_bytes=2 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.error_kind == "too_large"
    assert "after decoding" in (result.error or "")
    # Inflating is bounded by the cap: nowhere near the 256 MB the bomb expands to.
    assert peak < 24 * 1024 * 1024, f"peak memory {peak / 1e6:.1f} MB"


def test_gzip_and_raw_deflate_bodies_are_decoded(feed_server: FeedServer) -> None:
    import gzip
    import zlib

    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = raw.compress(FEED) + raw.flush()
    feed_server.route("/gz.xml", serve_bytes(gzip.compress(FEED), {"Content-Encoding": "gzip"}))
    feed_server.route("/df.xml", serve_bytes(raw_deflate, {"Content-Encoding": "deflate"}))
    feed_server.route("/zl.xml", serve_bytes(zlib.compress(FEED), {"Content-Encoding": "deflate"}))
    feed_server.route("/br.xml", serve_bytes(brotli.compress(FEED), {"Content-Encoding": "br"}))
    for path in ("/gz.xml", "/df.xml", "/zl.xml", "/br.xml"):
        result = fetch(feed_server.url(path))
        assert result.ok and result.body == FEED, path


def test_a_gzip_body_of_several_members_is_read_whole(feed_server: FeedServer) -> None:
    """gzip's format allows members one after another (`cat a.gz b.gz`); only the first was read."""
    import gzip

    half = len(FEED) // 2
    members = gzip.compress(FEED[:half]) + gzip.compress(FEED[half:])
    feed_server.route("/two.xml", serve_bytes(members, {"Content-Encoding": "gzip"}))
    result = fetch(feed_server.url("/two.xml"))
    assert result.ok and result.body == FEED
    # Several members inflate within the cap like one.
    decoder = CappedDecoder("gzip", cap=1000)
    with pytest.raises(Exception, match=r"exceeds fetch\.max_bytes"):
        decoder.feed(gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600))


def test_a_304_to_a_request_that_was_not_conditional_is_an_error(feed_server: FeedServer) -> None:
    """A server that answers 304 without being asked "since when" would look healthy forever."""
    feed_server.put("/liar.xml", b"", status=304)
    result = fetch(feed_server.url("/liar.xml"))
    assert not result.ok and result.error_kind == "http" and "not conditional" in (result.error or "")


def test_corrupt_or_unknown_encoding_is_a_decode_error(feed_server: FeedServer) -> None:
    feed_server.route("/bad.xml", serve_bytes(b"not gzip at all", {"Content-Encoding": "gzip"}))
    feed_server.route("/zz.xml", serve_bytes(b"x", {"Content-Encoding": "compress"}))
    assert fetch(feed_server.url("/bad.xml")).error_kind == "decode"
    result = fetch(feed_server.url("/zz.xml"))
    assert result.error_kind == "decode" and "compress" in (result.error or "")
    # The charset where the coding belongs (a misconfigured server): a body that is plainly the
    # feed is read as it is.
    feed_server.route("/cs.xml", serve_bytes(FEED, {"Content-Encoding": "UTF-8"}))
    result = fetch(feed_server.url("/cs.xml"))
    assert result.ok and result.body == FEED


def test_capped_decoder_never_inflates_past_the_cap() -> None:
    decoder = CappedDecoder("gzip", cap=1000)
    bomb = gzip_bomb(8 * 1024 * 1024)
    with pytest.raises(Exception, match=r"exceeds fetch\.max_bytes"):
        decoder.feed(bomb)
    assert decoder.size <= 1000


# --- politeness ----------------------------------------------------------------------------------


def test_user_agent_names_the_project_and_contact_and_asks_for_compression(
    feed_server: FeedServer,
) -> None:
    feed_server.put("/f.xml", FEED)
    fetch(feed_server.url("/f.xml"), contact_url="https://newsroom.example/monitor-contact")
    headers = {k.lower(): v for k, v in feed_server.requests_for("/f.xml")[0].headers.items()}
    assert headers["user-agent"].startswith("story-monitor/")
    assert "https://newsroom.example/monitor-contact" in headers["user-agent"]
    assert "gzip" in headers["accept-encoding"] and "br" in headers["accept-encoding"]


def test_cache_headers_and_retry_after_are_read(feed_server: FeedServer) -> None:
    feed_server.route("/cached.xml", serve_bytes(FEED, {"Cache-Control": "public, max-age=900"}))
    feed_server.route("/busy.xml", status(503, {"Retry-After": "120"}))
    feed_server.route("/dated.xml", status(429, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}))
    assert fetch(feed_server.url("/cached.xml")).max_age == 900
    busy = fetch(feed_server.url("/busy.xml"))
    assert busy.status == 503 and busy.error_kind == "http" and busy.retry_after == 120
    dated = fetch(feed_server.url("/dated.xml"))
    assert dated.retry_after is not None and dated.retry_after > 86400


def test_per_host_concurrency_is_limited(feed_server: FeedServer) -> None:
    probe = ConcurrencyProbe(FEED)
    feed_server.route("/slow.xml", probe)

    async def main() -> list[FetchResult]:
        results: list[FetchResult] = []
        async with Fetcher(fast_fetch_config(per_host=2, concurrency=10)) as fetcher:

            async def one() -> None:
                results.append(await fetcher.fetch_feed(feed_server.url("/slow.xml")))

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(one)
        return results

    results = anyio.run(main)
    assert all(r.ok for r in results) and len(results) == 6
    assert probe.max_active == 2


# --- article URLs from feed content --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/article",
        "http://localhost:{port}/article",  # refused after DNS resolution
        "http://10.1.2.3/article",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:{port}/article",
        "http://[::ffff:127.0.0.1]:{port}/article",
        "file:///etc/passwd",
        "ftp://127.0.0.1/article",
    ],
)
def test_article_links_to_private_addresses_are_refused(feed_server: FeedServer, url: str) -> None:
    feed_server.put("/article", b"<html><body>geheim</body></html>", content_type="text/html")
    result = fetch(url.format(port=feed_server.port), article=True)
    assert result.error_kind == "forbidden_address"
    assert result.body is None
    assert feed_server.requests == []  # refused before any request left the client


def test_article_links_to_private_addresses_when_allowed(feed_server: FeedServer) -> None:
    feed_server.put("/article", b"<html><body>erlaubt</body></html>", content_type="text/html")
    result = fetch(feed_server.url("/article"), article=True, allow_private_addresses=True)
    assert result.ok and b"erlaubt" in (result.body or b"")


def test_check_public_url_accepts_public_literal_addresses() -> None:
    anyio.run(check_public_url, "https://93.184.216.34/artikel")  # no DNS needed for a literal


def test_retry_after_forms() -> None:
    # One parser for feeds and webhook receivers (monitor.alert.webhook uses it too).
    from monitor.alert import webhook
    from monitor.fetch import parse_retry_after

    assert webhook.parse_retry_after is parse_retry_after
    now = 4102444800.0  # 2100-01-01T00:00:00Z
    assert parse_retry_after(" 120 ", now) == 120.0
    assert parse_retry_after("Fri, 01 Jan 2100 00:02:00 GMT", now) == 120.0
    assert parse_retry_after("Fri, 01 Jan 2100 00:02:00 -0000", now) == 120.0  # "-0000": still UTC
    assert parse_retry_after("Thu, 31 Dec 2099 23:00:00 GMT", now) == 0.0  # in the past: now
    for bad in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(bad, now) is None, bad
