"""ShardedTransport: requests spread over small pools, bodies intact, connections kept alive."""

from __future__ import annotations

import anyio
import httpx
import pytest

from monitor.config import FetchConfig
from monitor.fetch import Fetcher
from monitor.http_pool import ShardedTransport
from tests.servers import FeedServer


def test_shards_are_small_and_cover_the_concurrency() -> None:
    transport = ShardedTransport(max_connections=100)
    assert transport.shards == 13  # ceil(100 / 8) pools of at most 8 connections
    assert ShardedTransport(max_connections=3).shards == 1


def test_concurrent_fetches_through_the_sharded_transport() -> None:
    with FeedServer() as server:
        paths = [f"/feed{i}.xml" for i in range(40)]
        for i, path in enumerate(paths):
            server.put(path, f"<rss><channel><title>Feed {i} – Grüße</title></channel></rss>")
        transport = ShardedTransport(max_connections=16, shard_size=4)
        config = FetchConfig(concurrency=16, per_host=16)

        async def main() -> list:
            async with Fetcher(config, transport=transport) as fetcher:
                results: dict[str, object] = {}

                async def one(path: str) -> None:
                    results[path] = await fetcher.fetch_feed(server.url(path))

                for _round in range(2):  # the second round reuses kept-alive connections
                    async with anyio.create_task_group() as tg:
                        for path in paths:
                            tg.start_soon(one, path)
                    assert transport._in_flight == [0] * transport.shards
                return [results[p] for p in paths]

        results = anyio.run(main)
        for i, result in enumerate(results):
            assert result.status == 200, result.error  # type: ignore[attr-defined]
            assert f"Feed {i} – Grüße".encode() in result.body  # type: ignore[attr-defined]
        assert len(server.requests) == 80


def test_failed_request_releases_its_slot() -> None:
    transport = ShardedTransport(max_connections=8, shard_size=4)

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("http://127.0.0.1:9/unreachable", timeout=2)
        assert transport._in_flight == [0, 0]

    anyio.run(main)
