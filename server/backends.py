"""What `[scale] backend` chooses besides the store: cache, rate limits, broker, admission."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from anyio.abc import TaskGroup

from server import shared_redis
from server.admission import Admission, ModelAdmission
from server.admission_redis import RedisAdmission
from server.broker import Broker
from server.broker_redis import RedisBroker
from server.cache import ResponseCache
from server.cache_disk import DiskCache
from server.cache_redis import RedisCache
from server.capacity import AdaptiveLimit
from server.capacity_redis import RedisLimit
from server.metrics import Metrics
from server.ratelimit import LocalRateLimiter, RateLimiter
from server.ratelimit_redis import RedisRateLimiter
from server.settings import Settings
from server.store import Store
from server.streaming import Generations

DAY_S = 86400.0
# A live step's stream outlives the longest a step may run by this factor (then it expires).
LIVE_TTL_FACTOR = 4


@dataclass
class Backends:
    """The embedded ones live in this process (diskcache, memory); the distributed ones in the
    Redis that `redis` reaches, shared by every worker."""

    cache: ResponseCache
    session_limit: RateLimiter
    answer_limit: RateLimiter
    redis: shared_redis.SharedRedis | None = None

    def broker(
        self,
        task_group: TaskGroup,
        store: Store,
        settings: Settings,
        on_abandon: Callable[[], None] = lambda: None,
        on_takeover: Callable[[], None] = lambda: None,
    ) -> Broker:
        """The generation broker, running in `task_group`: in-process, or across every worker
        through Redis (its reader and stop listener start here)."""
        grace_s = settings.stream.abandon_grace_s
        if self.redis is None:
            return Generations(task_group, grace_s=grace_s, on_abandon=on_abandon)
        broker = RedisBroker(
            task_group,
            self.redis,
            store,
            grace_s=grace_s,
            lease_s=settings.scale.lease_s,
            frame_s=settings.stream.frame_ms / 1000,
            live_ttl_s=LIVE_TTL_FACTOR * settings.limits.worker_time_limit_s,
            on_abandon=on_abandon,
            on_takeover=on_takeover,
        )
        task_group.start_soon(broker.run, name="generation broker")
        return broker

    def admission(self, task_group: TaskGroup, settings: Settings) -> ModelAdmission:
        """Model-call admission: in this process, or one budget and one queue for every worker
        through Redis (its renewal task starts here)."""
        limits = settings.limits
        maximum, adaptive = limits.max_concurrent_ai_requests, limits.adaptive_concurrency
        if self.redis is None:
            learned = AdaptiveLimit(maximum, adaptive=adaptive)
            return Admission(learned, queue_timeout_s=limits.queue_timeout_s)
        shared = RedisLimit(self.redis, maximum) if adaptive else None
        admission = RedisAdmission(
            self.redis,
            AdaptiveLimit(maximum, adaptive=adaptive, store=shared),
            queue_timeout_s=limits.queue_timeout_s,
            lease_s=settings.scale.lease_s,
            shared_limit=shared,
        )
        task_group.start_soon(admission.run, name="admission renewals")
        return admission

    async def close(self) -> None:
        await self.cache.close()
        if self.redis is not None:
            await self.redis.close()


async def open_backends(settings: Settings, metrics: Metrics | None = None) -> Backends:
    """The backends the settings choose; RedisUnreachable (one line, where) when the distributed
    backend's Redis does not answer."""
    limits = settings.limits
    if settings.scale.backend != "distributed":
        storage = settings.storage
        return Backends(
            cache=DiskCache(storage.data_dir / "cache", size_mb=storage.cache_size_mb),
            session_limit=LocalRateLimiter(limits.sessions_per_minute_per_client),
            answer_limit=LocalRateLimiter(limits.answers_per_minute_per_client),
        )
    redis = await shared_redis.SharedRedis.connect(settings.scale.redis_url)
    ttl_s = settings.storage.session_ttl_days * DAY_S

    def unavailable(limit: str) -> Callable[[], object]:
        return metrics.ratelimit_unavailable.labels(limit).inc if metrics else lambda: None

    return Backends(
        cache=RedisCache(redis, default_ttl_s=ttl_s, pool_ttl_s=ttl_s),
        session_limit=RedisRateLimiter(
            redis,
            limits.sessions_per_minute_per_client,
            name="sessions",
            on_unavailable=unavailable("sessions"),
        ),
        answer_limit=RedisRateLimiter(
            redis,
            limits.answers_per_minute_per_client,
            name="answers",
            on_unavailable=unavailable("answers"),
        ),
        redis=redis,
    )


async def check_backends(settings: Settings) -> None:
    """run.py's start-up check: the distributed backend's Redis answers (one line if not)."""
    if settings.scale.backend == "distributed":
        redis = await shared_redis.SharedRedis.connect(settings.scale.redis_url)
        await redis.close()
