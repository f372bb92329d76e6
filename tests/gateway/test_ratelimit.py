"""The rate limiter alone: counting, windows on the injected clock, Redis shared and down."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.exceptions import RedisError

from novo_gateway.kit.clock import FrozenClock
from novo_gateway.kit.errors import ServiceUnavailable
from novo_gateway.kit.lease_store import Grant
from novo_gateway.kit.limiter import REDIS_POOL_SIZE, RateLimiter
from tests.adversarial.harness import PrivateRedis, private_redis
from tests.conftest import make_test_settings

# A port nothing listens on: connecting fails at once, as with a Redis that is down.
DOWN_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
async def make_limiter() -> AsyncIterator[Callable[..., RateLimiter]]:
    made: list[RateLimiter] = []

    def make(clock: FrozenClock, **overrides: Any) -> RateLimiter:
        limiter = RateLimiter(make_test_settings(**overrides), clock)
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        await limiter.close()


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


async def test_hits_are_admitted_up_to_the_limit_then_refused(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    results = [await limiter.hit("account", "1", 3) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert {r.limit for r in results} == {3}


async def test_reset_is_the_end_of_the_clock_aligned_window(
    make_limiter: Callable[..., RateLimiter],
) -> None:
    clock = FrozenClock(datetime(2026, 11, 26, 12, 0, 15, tzinfo=UTC))
    result = await make_limiter(clock).hit("account", "1", 5)
    assert result.reset_in == 45
    assert result.reset_at == datetime(2026, 11, 26, 12, 1, tzinfo=UTC).timestamp()


async def test_a_new_window_admits_again_when_the_clock_moves_on(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    assert (await limiter.hit("account", "1", 1)).allowed
    refused = await limiter.hit("account", "1", 1)
    assert not refused.allowed
    clock.advance(refused.reset_in)
    assert (await limiter.hit("account", "1", 1)).allowed


async def test_limits_of_different_identities_and_buckets_are_separate(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    assert (await limiter.hit("account", "1", 1)).allowed
    assert (await limiter.hit("account", "2", 1)).allowed
    assert (await limiter.hit("ip", "1", 1)).allowed


async def test_refused_result_carries_retry_after_and_both_header_families(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    await limiter.hit("account", "1", 1)
    headers = (await limiter.hit("account", "1", 1)).headers()
    assert headers["X-RateLimit-Limit"] == headers["RateLimit-Limit"] == "1"
    assert headers["X-RateLimit-Remaining"] == headers["RateLimit-Remaining"] == "0"
    assert headers["Retry-After"] == headers["RateLimit-Reset"]
    assert int(headers["X-RateLimit-Reset"]) > clock.time()


async def test_peek_does_not_count_a_call(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    await limiter.hit("login", "a", 2)
    peeked = await limiter.peek("login", "a", 2)
    assert (peeked.allowed, peeked.remaining) == (True, 1)
    assert (await limiter.hit("login", "a", 2)).allowed
    assert not (await limiter.peek("login", "a", 2)).allowed


async def test_clear_forgets_the_calls_of_the_window(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    await limiter.hit("login", "a", 1)
    await limiter.clear("login", "a")
    assert (await limiter.hit("login", "a", 1)).allowed


async def test_limit_is_exact_under_concurrency_in_process(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    results = await asyncio.gather(*(limiter.hit("account", "1", 40) for _ in range(90)))
    assert sum(r.allowed for r in results) == 40


async def test_limit_is_exact_under_concurrency_across_limiters_sharing_redis(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    prefix = unique_prefix()
    first = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=prefix)
    second = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=prefix)
    calls = [(first if i % 2 else second).hit("account", "1", 40) for i in range(90)]
    results = await asyncio.gather(*calls)
    assert sum(r.allowed for r in results) == 40
    assert first.shared and second.shared


async def test_more_concurrent_hits_than_redis_connections_wait_for_one_not_fail(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    limiter = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=unique_prefix())
    # Three times the pool's connections, all at once (a login burst: `hit` asks Redis each time).
    results = await asyncio.gather(
        *(limiter.hit("login", str(i), 5) for i in range(3 * REDIS_POOL_SIZE))
    )
    assert all(r.allowed for r in results)


async def test_redis_window_follows_the_injected_clock(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    limiter = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=unique_prefix())
    assert (await limiter.hit("account", "1", 1)).allowed
    refused = await limiter.hit("account", "1", 1)
    assert not refused.allowed
    clock.advance(refused.reset_in)
    assert (await limiter.hit("account", "1", 1)).allowed


async def test_redis_down_fails_closed_with_503_by_default(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock, redis_url=DOWN_REDIS_URL)
    with pytest.raises(ServiceUnavailable):
        await limiter.hit("account", "1", 5)


async def test_redis_down_admits_when_failing_open(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock, redis_url=DOWN_REDIS_URL, rate_limit_fail_open=True)
    result = await limiter.hit("account", "1", 5)
    assert result.allowed
    assert result.limit == 5


async def test_in_process_counters_of_ended_windows_are_swept(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    for user in range(50):
        await limiter.hit("account", str(user), 10)
    assert len(limiter._local) == 50
    clock.advance(61)
    await limiter.hit("account", "0", 10)
    assert len(limiter._local) == 1


async def test_a_new_window_starts_the_in_process_count_again(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    await limiter.hit("account", "1", 2)
    await limiter.hit("account", "1", 2)
    assert not (await limiter.peek("account", "1", 2)).allowed
    clock.advance(60)
    assert (await limiter.peek("account", "1", 2)).remaining == 2
    assert (await limiter.hit("account", "1", 2)).remaining == 1


async def test_leased_hits_are_exact_across_limiters_sharing_redis(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    prefix = unique_prefix()
    first = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=prefix)
    second = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=prefix)
    calls = [(first if i % 2 else second).hit_leased("account", "1", 40) for i in range(90)]
    results = await asyncio.gather(*calls)
    assert sum(r.allowed for r in results) == 40


async def test_leased_hits_never_pass_a_large_limit_across_limiters(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    prefix = unique_prefix()
    limiters = [
        make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=prefix) for _ in range(3)
    ]
    calls = [limiters[i % 3].hit_leased("account", "1", 1000) for i in range(1600)]
    results = await asyncio.gather(*calls)
    assert sum(r.allowed for r in results) == 1000
    assert not any(
        [(await limiter.hit_leased("account", "1", 1000)).allowed for limiter in limiters]
    )


async def test_leases_spare_redis_a_round_trip_per_call(
    make_limiter: Callable[..., RateLimiter],
    clock: FrozenClock,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=unique_prefix())
    store = limiter._store
    assert store is not None
    real_lease = store.lease
    round_trips = 0

    async def counting_lease(*args: Any, **kwargs: Any) -> Grant:
        nonlocal round_trips
        round_trips += 1
        return await real_lease(*args, **kwargs)

    monkeypatch.setattr(store, "lease", counting_lease)
    results = [await limiter.hit_leased("account", "1", 1_000_000) for _ in range(2000)]
    assert all(r.allowed for r in results)
    assert round_trips <= 5
    assert results[-1].remaining == 1_000_000 - 2000


async def test_leased_window_follows_the_clock_and_starts_again(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, redis_url: str
) -> None:
    limiter = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=unique_prefix())
    assert (await limiter.hit_leased("account", "1", 1)).allowed
    refused = await limiter.hit_leased("account", "1", 1)
    assert not refused.allowed
    clock.advance(refused.reset_in)
    assert (await limiter.hit_leased("account", "1", 1)).allowed


async def test_leased_hits_fail_closed_when_redis_is_down(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock, redis_url=DOWN_REDIS_URL)
    with pytest.raises(ServiceUnavailable):
        await limiter.hit_leased("account", "1", 10)


async def test_leased_hits_are_plain_hits_in_process(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock)
    results = [await limiter.hit_leased("account", "1", 3) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]


@pytest.fixture
def own_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (no persistence), so the test can restart it."""
    with private_redis() as server:
        yield server


async def _hit_until(limiter: RateLimiter, refused_with: int) -> int:
    """Leased hits until one is refused with `refused_with` (429 or 503); the admitted count."""
    admitted = 0
    for _ in range(200):
        try:
            result = await limiter.hit_leased("account", "1", 100)
        except ServiceUnavailable:
            if refused_with == 503:
                return admitted
            continue  # Redis is reconnecting or recovering: not admitted, try again
        if not result.allowed and refused_with == 429:
            return admitted
        admitted += result.allowed
    raise AssertionError(f"no {refused_with} within 200 hits")


async def test_leased_limits_hold_when_redis_restarts_and_loses_the_counters(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock, own_redis: PrivateRedis
) -> None:
    """Two processes, 60 calls, Redis restarted without persistence inside the window: the
    window still admits 100 in all, not 60 + 100. The busy process learns of the loss at its
    next lease (a short hold, 503, while the others re-seed); the idle one re-seeds at its
    heartbeat."""
    prefix = unique_prefix()
    busy, idle = (
        make_limiter(clock, redis_url=own_redis.url, rate_limit_key_prefix=prefix) for _ in range(2)
    )
    for limiter in (busy, idle):
        assert limiter._store is not None
        limiter._store.hold_ms = 300  # the default (2 s) only makes the test slower
    before = [await (busy, idle)[i % 2].hit_leased("account", "1", 100) for i in range(60)]
    assert all(result.allowed for result in before)

    own_redis.stop()
    own_redis.start()
    admitted = await _hit_until(busy, 503)  # its unspent tokens, then the hold
    for _ in range(5):  # what its worker does every half second (its old connection is dead)
        with contextlib.suppress(RedisError):
            await idle.heartbeat()
            break
    else:
        raise AssertionError("the heartbeat never reached the restarted Redis")
    deadline = time.monotonic() + 10
    while True:  # the hold is Redis's own timer: poll for its end, bounded
        try:
            await busy.hit_leased("account", "1", 100)
        except ServiceUnavailable:
            assert time.monotonic() < deadline, "the hold never ended"
            await asyncio.sleep(0.05)
            continue
        admitted += 1
        break
    admitted += await _hit_until(busy, 429)
    admitted += await _hit_until(idle, 429)  # the idle one spends what it still held
    assert 60 + admitted == 100


async def test_the_heartbeat_of_a_process_without_tokens_sends_nothing(
    make_limiter: Callable[..., RateLimiter], clock: FrozenClock
) -> None:
    limiter = make_limiter(clock, redis_url=DOWN_REDIS_URL)
    await limiter.heartbeat()  # would raise: nothing listens there
