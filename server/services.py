"""The shared resources built in the lifespan and handed to the handlers."""

from __future__ import annotations

from dataclasses import dataclass

from server.admission import ModelAdmission
from server.broker import Broker
from server.cache import ResponseCache
from server.identity import Identity
from server.journeys import Journeys
from server.metrics import Metrics
from server.ratelimit import RateLimiter
from server.settings import Settings
from server.shared_redis import SharedRedis
from server.store import Store
from server.views import Views
from server.watchdog import Watchdog


@dataclass
class Services:
    settings: Settings
    store: Store
    cache: ResponseCache
    identity: Identity
    generations: Broker
    admission: ModelAdmission
    journeys: Journeys
    views: Views
    watchdog: Watchdog
    metrics: Metrics
    session_limit: RateLimiter
    answer_limit: RateLimiter
    # The distributed backend's Redis (readiness); None with the embedded backend.
    redis: SharedRedis | None = None
