"""The response cache and scenario pool, and the fallback tiers: cache, pool, offline."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import diskcache
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server import model as models
from server import shared_redis, watch
from server.admission import Admission
from server.app import create_app
from server.cache import POOL_SIZE, ResponseCache, normalize, request_key
from server.cache_disk import MB, DiskCache
from server.cache_redis import RedisCache
from server.generators import question as question_gen
from server.generators import scenario as scenario_gen
from server.generators.bank import load_bank
from server.generators.journey import Exchange, Journey, Prompt
from server.generators.offline import OfflineWriter
from server.metrics import Metrics
from server.settings import Settings
from server.shared_redis import SharedRedis
from server.steps import StepWriter
from server.store import Finished, Session, Store
from server.streaming import Generation, Generations
from tests import stored
from tests.conftest import Upstream
from tests.databases import Database
from tests.fake_upstream import FakeUpstream, Script
from tests.redis_server import RedisServer
from tests.scrape import sample
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

FINANCE = Journey(
    category_id="finance",
    category_title="Money",
    dimensions=("Risk tolerance", "Long-term thinking"),
    seed=7,
    questions_total=2,
)
SCENARIO_TEXT = "You find an envelope with 500 euros on the bus. " * 12


def with_answer(answer: str) -> Journey:
    return Journey(
        category_id="finance",
        category_title="Money",
        dimensions=FINANCE.dimensions,
        seed=FINANCE.seed,
        questions_total=2,
        scenario=SCENARIO_TEXT,
        exchanges=(Exchange("Would you keep it?", answer),),
    )


# normalize() and request_key()


def test_case_whitespace_and_punctuation_do_not_change_the_normal_form() -> None:
    assert normalize("  I would KEEP it,   honestly!\n\tMaybe...") == normalize(
        "i would keep it honestly maybe"
    )
    assert normalize("\uff26\uff55\uff4c\uff4c width") == normalize(
        "full width"
    )  # NFKC: full-width letters
    assert normalize("I keep it") != normalize("I return it")


def test_requests_differing_only_in_case_whitespace_or_punctuation_share_a_key() -> None:
    one = question_gen.build(with_answer("I would keep it, honestly."), 2, 200)
    two = question_gen.build(with_answer("i would   KEEP it honestly"), 2, 200)
    assert one.messages != two.messages
    assert request_key(one, "fake", "s1") == request_key(two, "fake", "s1")


def test_a_different_answer_model_or_token_cap_gives_a_different_key() -> None:
    base = question_gen.build(with_answer("I would keep it."), 2, 200)
    key = request_key(base, "fake", "s1")
    assert (
        request_key(question_gen.build(with_answer("I would return it."), 2, 200), "fake", "s1")
        != key
    )
    assert request_key(base, "other-model", "s1") != key
    assert (
        request_key(question_gen.build(with_answer("I would keep it."), 2, 300), "fake", "s1")
        != key
    )


def test_two_sessions_do_not_share_a_scenario_key() -> None:
    other_seed = Journey("finance", "Money", FINANCE.dimensions, seed=8, questions_total=2)
    assert scenario_gen.variation(7) != scenario_gen.variation(8)
    assert request_key(scenario_gen.build(FINANCE, 300), "fake", "s1") != request_key(
        scenario_gen.build(other_seed, 300), "fake", "s1"
    )


def test_the_same_request_from_two_sessions_has_two_keys() -> None:
    prompt = question_gen.build(with_answer("I would keep it."), 2, 200)
    assert request_key(prompt, "fake", "session-a") != request_key(prompt, "fake", "session-b")


# The ResponseCache, on both backends: diskcache in a temporary directory, and Redis

Make = Callable[..., Awaitable[ResponseCache]]


@pytest.fixture(params=["disk", "redis"])
async def make_cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """A factory of caches of each backend in turn. Every Redis one is a worker of its own (a
    client with its own connections) on the same empty Redis; every disk one opens the same
    directory."""
    made: list[ResponseCache] = []
    clients: list[Redis] = []

    async def make(**options: Any) -> ResponseCache:
        if request.param == "disk":
            made.append(DiskCache(tmp_path / "cache", size_mb=3, **options))
        else:
            clients.append(shared_redis.client(request.getfixturevalue("redis_url")))
            made.append(RedisCache(SharedRedis(clients[-1]), **options))
        return made[-1]

    yield make
    for cache in made:
        await cache.close()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def cache(make_cache: Make) -> ResponseCache:
    return await make_cache()


async def test_get_and_put_count_hits_and_misses(cache: ResponseCache) -> None:
    assert await cache.get("response:a") is None
    await cache.put("response:a", "some text", tag="s1")
    assert await cache.get("response:a") == "some text"
    assert await cache.get("response:b") is None
    assert (cache.hits, cache.misses) == (1, 2)


async def test_entries_outlive_the_cache_that_wrote_them(make_cache: Make) -> None:
    first = await make_cache()
    await first.put("response:a", "kept", tag="s1")
    await first.close()  # a restart; with Redis, as well another worker
    second = await make_cache()
    assert await second.get("response:a") == "kept"


async def test_the_pool_keeps_at_most_pool_size_scenarios(make_cache: Make) -> None:
    cache = await make_cache(pool_refresh_one_in=1)
    owners = [f"s{i}" for i in range(POOL_SIZE + 6)]
    for owner in owners:
        await cache.add_to_pool("finance", owner, f"scenario of {owner}")
    await cache.add_to_pool("finance", owners[-1], "rewritten")  # replaces, never duplicates
    # forget() counts a session's pool entry: the oldest ones are gone, the newest kept once.
    kept = [await cache.forget(owner, "finance") for owner in owners]
    assert kept == [0] * 6 + [1] * POOL_SIZE
    assert await cache.from_pool("finance", "someone") is None


async def test_a_full_pool_is_only_sometimes_refreshed(make_cache: Make) -> None:
    cache = await make_cache(pool_refresh_one_in=10**9)
    for index in range(POOL_SIZE):
        await cache.add_to_pool("finance", f"s{index}", f"scenario {index}")
    await cache.add_to_pool("finance", "late", "a later scenario")  # the pool is full: skipped
    assert await cache.forget("late", "finance") == 0
    assert await cache.forget("s0", "finance") == 1


async def test_the_pool_never_returns_the_sessions_own_scenario(cache: ResponseCache) -> None:
    await cache.add_to_pool("finance", "mine", "my scenario")
    assert await cache.from_pool("finance", "mine") is None
    assert await cache.from_pool("ethics", "other") is None  # pools are per category
    await cache.add_to_pool("finance", "theirs", "their scenario")
    for _ in range(20):
        assert await cache.from_pool("finance", "mine") == "their scenario"
    assert await cache.from_pool("finance", "third") in {"my scenario", "their scenario"}


async def test_forget_drops_a_sessions_entries_and_its_pool_scenario(
    cache: ResponseCache,
) -> None:
    await cache.put("response:s1-scenario", "scenario one", tag="s1")
    await cache.put("response:s1-question", "question one", tag="s1")
    await cache.put("response:s2-scenario", "scenario two", tag="s2")
    await cache.add_to_pool("finance", "s1", "scenario one")
    await cache.add_to_pool("finance", "s2", "scenario two")
    assert (await cache.entries_of("s1"), await cache.entries_of("s2")) == (2, 1)

    assert await cache.forget("s1", "finance") == 3
    assert await cache.get("response:s1-scenario") is None
    assert await cache.get("response:s1-question") is None
    assert await cache.get("response:s2-scenario") == "scenario two"
    assert await cache.from_pool("finance", "s3") == "scenario two"
    assert await cache.forget("s1", "finance") == 0
    assert (await cache.entries_of("s1"), await cache.entries_of("s2")) == (0, 1)


async def test_a_forgotten_session_is_not_served_from_memory(cache: ResponseCache) -> None:
    await cache.put("response:mine", "my answers' text", tag="session-1")
    await cache.add_to_pool("finance", "session-1", "my scenario")
    assert await cache.recent("response:mine") == "my answers' text"
    await cache.forget("session-1", "finance")
    assert await cache.recent("response:mine") is None
    assert await cache.get("response:mine") is None
    assert await cache.from_pool("finance", "someone-else") is None


async def test_the_cache_answers_ping(cache: ResponseCache) -> None:
    assert await cache.ping()


# diskcache only


async def test_the_size_limit_is_given_to_diskcache(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "cache", size_mb=3)
    # Settings live in the cache's own database: a second handle reads what was set.
    reopened = diskcache.Cache(str(tmp_path / "cache"))
    try:
        assert reopened.size_limit == 3 * MB
        assert reopened.eviction_policy == "least-recently-used"
    finally:
        reopened.close()
        await cache.close()


# Redis only: shared by every worker, every key expires, nothing decided in memory


@pytest.fixture
async def workers(redis_url: str) -> AsyncIterator[tuple[Redis, RedisCache, RedisCache]]:
    """Two workers' caches on one Redis, and a client to look at the keys."""
    clients = [shared_redis.client(redis_url) for _ in range(3)]
    yield clients[0], RedisCache(SharedRedis(clients[1])), RedisCache(SharedRedis(clients[2]))
    for client in clients:
        await client.aclose()


async def test_a_journey_deleted_on_one_worker_is_gone_on_every_other(
    workers: tuple[Redis, RedisCache, RedisCache],
) -> None:
    _, one, other = workers
    await one.put("response:q1", "a question", tag="s1")
    await one.add_to_pool("finance", "s1", "a scenario")
    assert await other.get("response:q1") == "a question"
    assert await other.recent("response:q1") == "a question"  # Redis's answer, not memory's
    assert await other.from_pool("finance", "s2") == "a scenario"
    assert await other.forget("s1", "finance") == 2
    assert await one.recent("response:q1") is None
    assert await one.get("response:q1") is None
    assert await one.from_pool("finance", "s2") is None


async def test_every_key_expires(workers: tuple[Redis, RedisCache, RedisCache]) -> None:
    look, cache, _ = workers
    await cache.put("response:long", "text", tag="s1", expire_s=3600)
    await cache.put("response:short", "text", tag="s1", expire_s=60)
    await cache.put("response:default", "text", tag="s2")
    await cache.add_to_pool("finance", "s1", "a scenario")
    ttls = {key: await look.pttl(key) for key in await look.keys("*")}
    assert len(ttls) == 7  # 3 entries, 2 session indexes, the pool's order and texts
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    # A session's index lives as long as its longest entry, so a deletion always finds them.
    assert 3_500_000 < ttls["crossroads:cache-of:s1"] <= 3_600_000
    assert ttls["crossroads:cache:response:short"] <= 60_000


async def test_entries_that_expired_are_not_counted(
    workers: tuple[Redis, RedisCache, RedisCache],
) -> None:
    _, cache, _ = workers
    await cache.put("response:gone", "text", tag="s1", expire_s=0.05)
    await cache.put("response:kept", "text", tag="s1")
    await anyio.sleep(0.1)  # Redis's own clock expires it: nothing here can drive it
    assert await cache.entries_of("s1") == 1
    assert await cache.get("response:gone") is None


async def test_an_unreachable_redis_fails_loudly_but_recent_and_ping_do_not(
    redis_server: RedisServer, redis_url: str
) -> None:
    client = shared_redis.client(redis_url)
    cache = RedisCache(SharedRedis(client))
    try:
        await cache.put("response:a", "text", tag="s1")
        redis_server.stop()
        # Callers (the step writer, deletion) decide what a failure means; these two answer.
        assert await cache.recent("response:a") is None
        assert not await cache.ping()
        with pytest.raises(RedisError):
            await cache.get("response:a")
        redis_server.start()  # empty again, as after a crash: the same client recovers
        assert await cache.ping()
        assert await cache.get("response:a") is None
        await cache.put("response:a", "again", tag="s1")
        assert await cache.get("response:a") == "again"
    finally:
        await client.aclose()


# StepWriter: cache first, then the model, else cache, pool, offline


class WritingModel:
    """A live model that writes its chunks; counts its calls."""

    live = True
    name = "fake"

    def __init__(self, chunks: list[str]) -> None:
        self.chunks = chunks
        self.calls = 0

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: watch.Watcher = watch.UNWATCHED
    ) -> AsyncGenerator[models.Delta]:
        self.calls += 1
        for chunk in self.chunks[:-1]:
            yield models.Delta(chunk)
        yield models.Delta(self.chunks[-1], "stop")


class FailingModel:
    """A live model whose first token never comes; `meanwhile` runs before it gives up."""

    live = True
    name = "fake"

    def __init__(self, meanwhile: Callable[[], Awaitable[None]] | None = None) -> None:
        self.meanwhile = meanwhile
        self.calls = 0

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: watch.Watcher = watch.UNWATCHED
    ) -> AsyncGenerator[models.Delta]:
        self.calls += 1
        if self.meanwhile is not None:
            await self.meanwhile()
        raise models.FirstTokenTimeout("no token within 1.0s (fake)")
        yield models.Delta("")  # makes this an async generator


class Rig:
    """A StepWriter over a real store and cache of either backend (SQLite and diskcache, or
    PostgreSQL and Redis), with the model swappable."""

    def __init__(self, settings: Settings, store: Store, cache: ResponseCache) -> None:
        self.settings = settings
        self.store = store
        self.cache = cache
        self.metrics = Metrics()
        self.admission = Admission(2, queue_timeout_s=5.0)
        self.offline = models.OfflineModel(OfflineWriter(load_bank()), chars_per_s=4000.0)

    def writer(self, model: models.Model) -> StepWriter:
        return StepWriter(
            self.settings,
            model=model,
            offline=self.offline,
            admission=self.admission,
            cache=self.cache,
            store=self.store,
            metrics=self.metrics,
        )

    async def session(self) -> Session:
        return await self.store.create_session(
            owner="owner", category="finance", seed=7, questions_total=2
        )

    async def write(
        self, model: models.Model, session: Session, prompt: Prompt
    ) -> tuple[Finished, Generation]:
        results: list[Finished] = []

        async def work(gen: Generation) -> None:
            await self.store.open_step(session.id, prompt.step, prompt.kind)
            gen.start(await self.store.begin_generation(session.id, prompt.step))
            results.append(await self.writer(model).write(gen, session, prompt))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                gen = Generations(tg, grace_s=60).start((session.id, prompt.step), work)
        assert gen.ended
        return results[0], gen

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the exported text, as a scrape would read it (0 when absent)."""
        return sample(self.metrics.render().decode(), name, **labels) or 0.0

    def fallbacks(self, reason: str, tier: str) -> float:
        return self.metric("crossroads_fallbacks_total", reason=reason, tier=tier)


@pytest.fixture
async def rig(database: Database, store: Store) -> AsyncIterator[Rig]:
    backends = await database.open_backends()
    yield Rig(database.settings(), store, backends.cache)
    await backends.close()


def scenario_prompt(seed: int = 7) -> Prompt:
    journey = Journey("finance", "Money", FINANCE.dimensions, seed=seed, questions_total=2)
    return scenario_gen.build(journey, 300)


def question_prompt() -> Prompt:
    journey = Journey(
        "finance", "Money", FINANCE.dimensions, seed=7, questions_total=2, scenario=SCENARIO_TEXT
    )
    return question_gen.build(journey, 1, 200)


async def test_a_model_written_step_is_cached_and_answered_again_without_the_model(
    rig: Rig,
) -> None:
    session = await rig.session()
    model = WritingModel(["You stand ", "at a fork."])
    first, _ = await rig.write(model, session, scenario_prompt())
    assert (first.source, model.calls) == ("model", 1)

    again, gen = await rig.write(model, session, scenario_prompt())
    assert model.calls == 1  # no second model call
    assert (again.source, again.text, again.note) == ("cache", "You stand at a fork.", None)
    assert gen.text == "You stand at a fork."
    assert rig.metric("crossroads_cache_lookups_total", result="hit") == 1
    assert rig.metric("crossroads_generations_total", source="cache", outcome="complete") == 1
    assert rig.admission.in_use == 0


async def test_two_sessions_with_the_same_pooled_scenario_and_reply_get_separate_questions(
    rig: Rig,
) -> None:
    first = await rig.session()
    second = await rig.store.create_session(
        owner="someone else", category="finance", seed=7, questions_total=2
    )
    # Both sessions got the same pooled scenario and clicked the same quick reply, so their
    # question requests are the same, word for word.
    prompt = question_prompt()
    mine, _ = await rig.write(WritingModel(["What would you ", "keep?"]), first, prompt)
    theirs_model = WritingModel(["Who would you ", "ask?"])
    theirs, _ = await rig.write(theirs_model, second, prompt)
    assert theirs_model.calls == 1
    assert (mine.source, mine.text) == ("model", "What would you keep?")
    assert (theirs.source, theirs.text) == ("model", "Who would you ask?")
    assert rig.metric("crossroads_cache_lookups_total", result="hit") == 0


async def test_a_failure_falls_back_to_the_cache_first(rig: Rig) -> None:
    session = await rig.session()
    prompt = scenario_prompt()
    await rig.cache.add_to_pool("finance", "someone-else", "A pooled scenario.")

    async def identical_request_finishes_meanwhile() -> None:
        # Another generation of the same request completed while this one waited.
        await rig.cache.put(
            request_key(prompt, "fake", session.id), "The cached scenario.", tag=session.id
        )

    model = FailingModel(identical_request_finishes_meanwhile)
    finished, gen = await rig.write(model, session, prompt)
    assert model.calls == 1
    assert (finished.source, finished.text) == ("cache", "The cached scenario.")
    assert finished.reason == "first_token_timeout"
    assert finished.note == (
        "The model was slow to answer, so this is the text written earlier for exactly the "
        "same request."
    )
    assert gen.text == "The cached scenario."
    assert gen.status == "using a prepared scenario"
    assert rig.fallbacks("first_token_timeout", "cache") == 1
    assert rig.fallbacks("first_token_timeout", "pool") == 0


async def test_without_a_cache_entry_a_scenario_falls_back_to_another_sessions_pool(
    rig: Rig,
) -> None:
    other = await rig.session()
    written = WritingModel(["Another visitor's ", "scenario."])
    assert (await rig.write(written, other, scenario_prompt(seed=1)))[0].source == "model"

    session = await rig.session()
    finished, gen = await rig.write(FailingModel(), session, scenario_prompt())
    assert (finished.source, finished.text) == ("pool", "Another visitor's scenario.")
    assert finished.model == "fake"
    assert finished.note == (
        "The model was slow to answer, so this is a scenario the model wrote earlier for "
        "another visitor."
    )
    assert gen.text == "Another visitor's scenario."
    assert rig.fallbacks("first_token_timeout", "pool") == 1


async def test_a_question_never_comes_from_the_pool(rig: Rig) -> None:
    await rig.cache.add_to_pool("finance", "someone-else", "A pooled scenario.")
    session = await rig.session()
    finished, gen = await rig.write(FailingModel(), session, question_prompt())
    assert finished.source == "offline"
    assert finished.model == "offline"
    assert finished.text and "pooled" not in finished.text
    assert gen.text == finished.text
    assert gen.status == "using the built-in writer"
    assert finished.note == (
        "The model was slow to answer, so this is our built-in writer's version."
    )
    assert rig.fallbacks("first_token_timeout", "offline") == 1
    assert rig.fallbacks("first_token_timeout", "pool") == 0


async def test_with_nothing_cached_or_pooled_the_offline_writer_answers(rig: Rig) -> None:
    session = await rig.session()
    await rig.cache.add_to_pool("finance", session.id, "This session's own scenario.")
    finished, _ = await rig.write(FailingModel(), session, scenario_prompt())
    assert finished.source == "offline"
    assert "own scenario" not in finished.text
    assert len(finished.text.split()) >= 100  # a whole prepared scenario
    assert finished.note == "The model was slow to answer, so this is a prepared scenario."
    assert rig.fallbacks("first_token_timeout", "offline") == 1
    assert rig.metric("crossroads_generations_total", source="offline", outcome="fallback") == 1
    assert rig.admission.in_use == 0


async def test_a_failed_step_is_not_cached_or_pooled(rig: Rig) -> None:
    session = await rig.session()
    await rig.write(FailingModel(), session, scenario_prompt())
    assert await rig.cache.get(request_key(scenario_prompt(), "fake", session.id)) is None
    assert await rig.cache.from_pool("finance", "another") is None


class BrokenModel:
    """A live model with a bug: it raises something no deadline or fault maps to."""

    live = True
    name = "fake"

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: watch.Watcher = watch.UNWATCHED
    ) -> AsyncGenerator[models.Delta]:
        yield models.Delta("You stand ")
        raise RuntimeError("a bug in the model layer")


async def test_an_unexpected_model_error_still_falls_back(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    session = await rig.session()
    finished, gen = await rig.write(BrokenModel(), session, scenario_prompt())
    assert (finished.source, finished.reason) == ("offline", "model_error")
    assert finished.note == "The model was unavailable, so this is a prepared scenario."
    assert gen.text == finished.text and not gen.text.startswith("You stand")
    assert gen.version == 2  # the partial text was replaced under a new version
    assert rig.fallbacks("model_error", "offline") == 1
    assert rig.admission.in_use == 0
    assert any(r.exc_info for r in caplog.records if "unexpectedly" in r.getMessage())


class BrokenCache(DiskCache):
    """A cache whose disk fails (full, locked, gone) on every call."""

    async def get(self, key: str) -> str | None:
        raise OSError("database or disk is full")

    async def put(self, key: str, text: str, *, tag: str, expire_s: float | None = None) -> None:
        raise OSError("database or disk is full")

    async def from_pool(self, category: str, session_id: str) -> str | None:
        raise OSError("database or disk is full")


async def test_a_failing_cache_is_a_miss_not_a_failed_step(rig: Rig, tmp_path: Path) -> None:
    rig.cache = BrokenCache(tmp_path / "broken", size_mb=8)
    session = await rig.session()
    written, _ = await rig.write(
        WritingModel(["You stand ", "at a fork."]), session, scenario_prompt()
    )
    assert (written.source, written.text) == ("model", "You stand at a fork.")

    fallen, _ = await rig.write(FailingModel(), session, scenario_prompt(seed=9))
    assert (fallen.source, fallen.reason) == ("offline", "first_token_timeout")
    # The lookup before the model and the fallback's cache tier (from memory) both missed;
    # only the first is a lookup of the cache on disk.
    assert rig.metric("crossroads_cache_lookups_total", result="miss") == 2
    await rig.cache.close()


# The app: an identical request after a restart is answered from the cache

SCENARIO_CHUNKS = [f"w{i} " for i in range(150)]


@pytest.fixture
def fake(upstream: Upstream) -> Upstream:
    upstream.fake.default = Script(chunks=SCENARIO_CHUNKS)
    return upstream


def scenario_requests(upstream: FakeUpstream) -> int:
    return sum("decision scenario" in r["messages"][1]["content"] for r in upstream.requests)


async def test_a_step_written_again_after_a_restart_comes_from_the_cache(
    database: Database, fake: Upstream
) -> None:
    upstream, upstream_url = fake
    settings = database.settings(
        llm={"base_url": upstream_url, "model": "fake-model"},
        journey={"questions_per_session": 2},
    )
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("finance")
            first = await visitor.stream(sid, 0)
            await visitor.stream(sid, 1)  # the question it opened, so the app is idle
            cookies = visitor.http.cookies
    assert 'data-source="model"' in first.events[-1].data
    assert scenario_requests(upstream) == 1
    requests_before = len(upstream.requests)

    # As if the process had died while writing the scenario: it is written again.
    stored.interrupt(settings, sid, 0)

    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            visitor.http.cookies = cookies
            again = await visitor.stream(sid, 0)
    assert len(upstream.requests) == requests_before  # no upstream call at all
    names = again.names()
    assert names[0] == "status" and "snapshot" in names and names[-1] == "done", names
    assert len(again.of("chunk")) <= 1  # delivered at once, not paced
    assert again.text() == first.text()
    done = again.events[-1].data
    assert 'data-source="cache"' in done
    assert "Served from an earlier identical request." in done
