"""An httpx transport that keeps connection pools small: several pools, requests spread over them.

The fetch stage uses it for ``fetch.http2: true`` (httpx's own wire, HTTP/2 via ALPN); the default
wire is aiohttp's (monitor/http_transport.py).

Why: httpcore's pool (1.0.x) re-examines every connection on every request it queues or finishes,
and for each idle one counts the idle ones again (``_assign_requests_to_connections``), with a
``poll()`` system call per idle connection to see whether it was closed. That is quadratic in the
pool size: with 100 connections a first poll of 500 feeds spent ~9 s of CPU in that bookkeeping
(profiled; ~23 million ``is_idle`` calls). Several pools of at most ``SHARD_SIZE`` connections
each keep the bookkeeping small and keep what the single pool gives: keep-alive connections
(reused within each pool) and HTTP/2 where a server offers it.

A request goes to the pool with the fewest requests in flight; the fetch stage's own semaphores
still bound the total and per-host concurrency.
"""

from __future__ import annotations

import math

import httpx

SHARD_SIZE = 8


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 30.0,
        http2: bool = True,
        shard_size: int = SHARD_SIZE,
    ) -> None:
        shards = max(1, math.ceil(max_connections / shard_size))
        per_shard = math.ceil(max_connections / shards)
        limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=per_shard,
            keepalive_expiry=keepalive_expiry,
        )
        # One TLS context for all pools: loading the CA bundle costs ~70 ms per context.
        ssl_context = httpx.create_ssl_context()
        self._shards = [
            httpx.AsyncHTTPTransport(verify=ssl_context, http2=http2, limits=limits) for _ in range(shards)
        ]
        self._in_flight = [0] * shards

    @property
    def shards(self) -> int:
        return len(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self._shards)), key=self._in_flight.__getitem__)
        self._in_flight[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._in_flight[index] -= 1
            raise
        # The connection stays busy until the body is read and closed: count it until then.
        response.stream = _CountedStream(response.stream, self._in_flight, index)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _CountedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, counts: list[int], index: int) -> None:
        self._stream = stream
        self._counts = counts
        self._index = index
        self._closed = False

    async def __aiter__(self):  # type: ignore[override]
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._counts[self._index] -= 1
        await self._stream.aclose()
