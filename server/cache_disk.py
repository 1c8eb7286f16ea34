"""The embedded backend's response cache and scenario pool, in diskcache under the data dir."""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

import diskcache

from server.cache import POOL_SIZE, REFRESH_ONE_IN
from server.serial_thread import SerialThread

MB = 1024 * 1024
RECENT_ENTRIES = 2000


class DiskCache:
    """The ResponseCache of one process: diskcache keeps the entries (size-bounded, least
    recently used first out), memory mirrors what this process wrote lately."""

    def __init__(
        self, directory: Path, *, size_mb: int, pool_refresh_one_in: int = REFRESH_ONE_IN
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(directory),
            size_limit=size_mb * MB,
            eviction_policy="least-recently-used",
            tag_index=True,
        )
        # diskcache's calls on one thread of their own: the cache's SQLite connection is per
        # thread, and one long-lived thread hands calls over cheaply (server/serial_thread.py).
        self._thread = SerialThread("diskcache")
        self.hits = 0
        self.misses = 0
        self._full_pools: set[str] = set()
        self._refresh_one_in = pool_refresh_one_in
        self._random = random.Random()
        # One process writes this cache, so memory can answer for what it wrote lately and
        # mirror the small pools: a fallback in a crowd then needs no thread at all.
        self._recent: OrderedDict[str, str] = OrderedDict()
        self._pools: dict[str, list[tuple[str, str]]] = {}

    async def close(self) -> None:
        await self._thread.close(self._cache.close)
        self._cache.close()  # the connection opened on this thread at start-up

    async def recent(self, key: str) -> str | None:
        """What this process stored under `key` lately, from memory only."""
        return self._recent.get(key)

    async def get(self, key: str) -> str | None:
        value = self._recent.get(key)
        if value is None:
            value = await self._thread.run(lambda: self._cache.get(key))
        if isinstance(value, str):
            self.hits += 1
            return value
        self.misses += 1
        return None

    async def put(self, key: str, text: str, *, tag: str, expire_s: float | None = None) -> None:
        """`tag` is the session id, so a session's entries can be forgotten with it; entries
        keyed on a person's answers expire with their session."""
        await self._thread.run(lambda: self._cache.set(key, text, tag=tag, expire=expire_s))
        self._recent[key] = text
        if len(self._recent) > RECENT_ENTRIES:
            self._recent.popitem(last=False)

    async def add_to_pool(self, category: str, session_id: str, text: str) -> None:
        """Keep the scenario for other sessions' fallbacks. Once a category's pool is full, only
        one scenario in REFRESH_ONE_IN replaces its oldest: variety is kept without rewriting
        the whole pool for every scenario written (a measured cost under load)."""
        if category in self._full_pools and self._random.randrange(self._refresh_one_in):
            return

        def add() -> list[tuple[str, str]]:
            with self._cache.transact():
                pool = self._cache.get(f"pool:{category}", [])
                pool = [entry for entry in pool if entry[0] != session_id][-(POOL_SIZE - 1) :]
                pool.append((session_id, text))
                self._cache.set(f"pool:{category}", pool)
                return pool

        pool = await self._thread.run(add)
        self._pools[category] = pool
        if len(pool) >= POOL_SIZE:
            self._full_pools.add(category)

    async def from_pool(self, category: str, session_id: str) -> str | None:
        """A completed scenario of this category written for another session."""
        if category not in self._pools:
            self._pools[category] = await self._thread.run(
                lambda: self._cache.get(f"pool:{category}", [])
            )
        pool = self._pools[category]
        others = [text for owner, text in pool if owner != session_id]
        return self._random.choice(others) if others else None

    async def forget(self, session_id: str, category: str) -> int:
        """Drop a session's cached entries and its pool scenario (a deleted journey)."""

        def drop() -> int:
            removed = int(self._cache.evict(session_id))
            with self._cache.transact():
                pool = self._cache.get(f"pool:{category}", [])
                kept = [entry for entry in pool if entry[0] != session_id]
                if len(kept) != len(pool):
                    self._cache.set(f"pool:{category}", kept)
                    removed += len(pool) - len(kept)
            return removed

        self._forget_in_memory(category)
        removed = await self._thread.run(drop)
        # Again after the disk: a pool read meanwhile may have loaded the old entries.
        self._forget_in_memory(category)
        return removed

    async def entries_of(self, session_id: str) -> int:
        """How many cached responses the session's steps left (operators' checks, tests)."""

        def count() -> int:
            tags = (self._cache.get(key, tag=True) for key in self._cache.iterkeys())
            return sum(1 for found in tags if isinstance(found, tuple) and found[1] == session_id)

        return await self._thread.run(count)

    def _forget_in_memory(self, category: str) -> None:
        self._recent.clear()
        self._pools.pop(category, None)
        self._full_pools.discard(category)

    def trim(self) -> None:
        """Let go of what memory holds for speed (memory pressure); the disk keeps it all."""
        self._recent.clear()
        self._pools.clear()

    async def ping(self) -> bool:
        def probe() -> bool:
            self._cache.set("ping", 1, expire=60)
            return bool(self._cache.get("ping") == 1)

        try:
            return await self._thread.run(probe)
        except Exception:
            return False
