"""The distributed backend's response cache and scenario pool, in Redis for every worker."""

from __future__ import annotations

import random

from redis.exceptions import RedisError

from server.cache import POOL_SIZE, REFRESH_ONE_IN
from server.shared_redis import SharedRedis

PREFIX = "crossroads:"
DAY_S = 86400.0

# Each write is one script, so that an entry and the index that lets a deletion find it, or a
# pool's order and its texts, never disagree (two workers writing at once, a worker killed
# between two commands). The scripts touch keys derived from the ones they are given (an
# entry's key read from the session's index): fine on one Redis, not on Redis Cluster.

# KEYS: the entry, the session's index. ARGV: text, time to live (ms).
PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
"""

# KEYS: the pool's order (a list of session ids, oldest first), its texts (a hash by session
# id). ARGV: session id, text, pool size, refresh ("1": write even when full), ttl (ms).
ADD_TO_POOL = """
local size = tonumber(ARGV[3])
if redis.call('LLEN', KEYS[1]) >= size and ARGV[4] ~= '1' then
  return 0
end
redis.call('LREM', KEYS[1], 0, ARGV[1])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
while redis.call('LLEN', KEYS[1]) > size do
  redis.call('HDEL', KEYS[2], redis.call('LPOP', KEYS[1]))
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
"""

# KEYS: the session's index, the pool's order, its texts. ARGV: session id. Returns how many
# entries (responses and pool scenario) were removed.
FORGET = """
local removed = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  removed = removed + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
redis.call('LREM', KEYS[2], 0, ARGV[1])
return removed + redis.call('HDEL', KEYS[3], ARGV[1])
"""

# KEYS: the session's index. Returns how many of its entries still exist.
ENTRIES_OF = """
local found = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  found = found + redis.call('EXISTS', key)
end
return found
"""


class RedisCache:
    """The ResponseCache shared by every worker. Nothing is kept in this process: every answer
    is what Redis says now, so a journey deleted on one worker is gone for all of them.

    Entries expire (`expire_s`, else `default_ttl_s`); a session's index of its entries lives
    as long as its longest entry; a category's pool expires `pool_ttl_s` after its last write.
    Size is bounded by expiry and by the operator's `maxmemory` policy on the Redis server."""

    def __init__(
        self,
        redis: SharedRedis,
        *,
        default_ttl_s: float = 30 * DAY_S,
        pool_ttl_s: float = 30 * DAY_S,
        pool_refresh_one_in: int = REFRESH_ONE_IN,
    ) -> None:
        self._redis = redis
        self._default_ttl_ms = int(default_ttl_s * 1000)
        self._pool_ttl_ms = int(pool_ttl_s * 1000)
        self._refresh_one_in = pool_refresh_one_in
        self._random = random.Random()
        self._put = redis.client.register_script(PUT)
        self._add_to_pool = redis.client.register_script(ADD_TO_POOL)
        self._forget = redis.client.register_script(FORGET)
        self._entries_of = redis.client.register_script(ENTRIES_OF)
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> str | None:
        value = await self._redis.call(lambda: self._redis.client.get(_entry(key)))
        if isinstance(value, str):
            self.hits += 1
            return value
        self.misses += 1
        return None

    async def recent(self, key: str) -> str | None:
        try:
            value = await self._redis.call(lambda: self._redis.client.get(_entry(key)))
        except (RedisError, OSError):
            return None
        return value if isinstance(value, str) else None

    async def put(self, key: str, text: str, *, tag: str, expire_s: float | None = None) -> None:
        ttl_ms = self._default_ttl_ms if expire_s is None else max(1, int(expire_s * 1000))
        await self._redis.call(
            lambda: self._put(keys=[_entry(key), _index(tag)], args=[text, ttl_ms])
        )

    async def add_to_pool(self, category: str, session_id: str, text: str) -> None:
        # The draw is made here, the decision in the script: only Redis knows if the pool is full.
        refresh = self._random.randrange(self._refresh_one_in) == 0
        args: list[str | int] = [
            session_id,
            text,
            POOL_SIZE,
            "1" if refresh else "0",
            self._pool_ttl_ms,
        ]
        await self._redis.call(lambda: self._add_to_pool(keys=_pool(category), args=args))

    async def from_pool(self, category: str, session_id: str) -> str | None:
        texts = await self._redis.call(lambda: self._redis.client.hgetall(_pool(category)[1]))
        others = [str(text) for owner, text in texts.items() if owner != session_id]
        return self._random.choice(others) if others else None

    async def forget(self, session_id: str, category: str) -> int:
        keys = [_index(session_id), *_pool(category)]
        return int(await self._redis.call(lambda: self._forget(keys=keys, args=[session_id])))

    async def entries_of(self, session_id: str) -> int:
        keys = [_index(session_id)]
        return int(await self._redis.call(lambda: self._entries_of(keys=keys)))

    def trim(self) -> None:
        """Nothing to let go of: this process holds no entries."""

    async def ping(self) -> bool:
        return await self._redis.ping()

    async def close(self) -> None:
        """The Redis client is the worker's, shared with the other Redis users; not closed here."""


def _entry(key: str) -> str:
    return f"{PREFIX}cache:{key}"


def _index(session_id: str) -> str:
    return f"{PREFIX}cache-of:{session_id}"


def _pool(category: str) -> list[str]:
    return [f"{PREFIX}pool:{category}:order", f"{PREFIX}pool:{category}:texts"]
