"""The rate limiter alone: counting, windows on the injected clock, Redis shared and down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from novo_gateway.clock import FrozenClock
from novo_gateway.errors import ServiceUnavailable
from novo_gateway.gateway.ratelimit import RateLimiter
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
    assert (await limiters[0].peek("account", "1", 1000)).remaining == 0


async def test_leases_spare_redis_a_round_trip_per_call(
    make_limiter: Callable[..., RateLimiter],
    clock: FrozenClock,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter = make_limiter(clock, redis_url=redis_url, rate_limit_key_prefix=unique_prefix())
    storage = limiter._storage
    assert storage is not None
    real_incr = storage.incr
    round_trips = 0

    async def counting_incr(*args: Any, **kwargs: Any) -> int:
        nonlocal round_trips
        round_trips += 1
        return await real_incr(*args, **kwargs)

    monkeypatch.setattr(storage, "incr", counting_incr)
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
