"""The C heap of a long-running process (glibc only; elsewhere nothing happens): how many malloc
arenas its threads share, and giving free pages back to the system after a poll round."""

from __future__ import annotations

import functools
import os
import sys
import time
from typing import Any

# glibc's mallopt parameter for the number of malloc arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
_last_trim = 0.0


@functools.cache
def _glibc(name: str) -> Any:
    """glibc's function ``name``, or None (not Linux, or another C library: musl, ...)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas for a long-running process (the daemon). By default glibc gives
    threads arenas of their own, up to 8 per core, and memory freed in one is not reused by another:
    a daemon storing new items every round (worker threads for the database, the scheduler's
    aiosqlite threads) grew from 139 to 149 MB over 80 rounds; with two arenas it held 131-133 MB,
    flat (bench/README.md, session 7). Call before threads start. ``MALLOC_ARENA_MAX`` in the
    environment stands. True when set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    import ctypes

    return bool(mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(arenas)))


def release_free_memory() -> None:
    """When no poll is running: give the C heap's free pages back to the system. A poll round's
    peak (bodies, parsed entries, from many threads) otherwise stays in the daemon's resident
    memory for good; measured ~40 MB after a first poll of 500 feeds, ~5 ms per call."""
    global _last_trim
    now = time.monotonic()
    if now - _last_trim < 1.0:
        return
    _last_trim = now
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)
