"""The ledger's per-endpoint day counter (`usage_endpoint_daily`) and its latency buckets.

Per account, UTC day, endpoint, method and latency bucket: the calls, the billed units and the
sum of the latencies of that day's events. The rows of one (account, day, endpoint, method) are a
histogram of its latencies, so the views add days together and still give a p95 (`p95`); the
mean is the latency sum over the calls. Kept exact like `usage_daily` (see `daily.py`): every
write of events adds its rows in the same transaction.

Buckets (fixed, as in HdrHistogram with 3 sub-bucket bits): latencies under 16 ms have a bucket
each; above, each power of two is cut into 8 equal buckets, so a bucket's width is at most an
eighth of its lower bound. A p95 read from the buckets is the upper bound of the bucket holding
the true (nearest-rank) p95: exact under 16 ms, otherwise at least the true value and less than
12.5 % above it. Migration 0009 computes the same buckets in SQL for its backfill.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

from novo_gateway.metering.daily import utc_day

SUB_BUCKETS = 8
EXACT_BELOW = 2 * SUB_BUCKETS  # 16 ms: one bucket per millisecond below
MAX_LATENCY_MS = 2**31 - 1

# (user_id, day, endpoint, method, bucket, calls, billable_units, latency_ms_sum)
EndpointDayRow = tuple[int, date, str, str, int, int, int, int]


def latency_bucket(latency_ms: int) -> int:
    """The bucket of a latency (see the module docstring)."""
    ms = min(max(latency_ms, 0), MAX_LATENCY_MS)
    if ms < EXACT_BELOW:
        return ms
    exponent = ms.bit_length() - 1  # 2**exponent <= ms < 2**(exponent + 1), exponent >= 4
    return EXACT_BELOW + (exponent - 4) * SUB_BUCKETS + ((ms >> (exponent - 3)) & 7)


def bucket_upper(bucket: int) -> int:
    """The largest latency of a bucket."""
    if bucket < EXACT_BELOW:
        return bucket
    exponent, sub = divmod(bucket - EXACT_BELOW, SUB_BUCKETS)
    exponent += 4
    return ((SUB_BUCKETS + sub) << (exponent - 3)) + (1 << (exponent - 3)) - 1


def p95(histogram: dict[int, int]) -> int:
    """The nearest-rank 95th percentile of `{bucket: calls}`, as its bucket's upper bound."""
    calls = sum(histogram.values())
    rank = -(-calls * 95 // 100)  # the smallest rank r with r * 100 >= calls * 95
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_upper(bucket)
    return 0


def count_endpoint_days(
    events: Iterable[tuple[int, datetime, str, str, int, int, bool]],
) -> list[EndpointDayRow]:
    """The counter rows of events given as (user, time, endpoint, method, latency, units,
    billed), sorted so concurrent writers lock rows in one order."""
    counts: dict[tuple[int, date, str, str, int], list[int]] = {}
    bucket_of = latency_bucket
    for user_id, at, endpoint, method, latency, units, billed in events:
        key = (
            user_id,
            at.date() if at.tzinfo is UTC else utc_day(at),
            endpoint,
            method,
            latency if 0 <= latency < EXACT_BELOW else bucket_of(latency),
        )
        found = counts.get(key)
        if found is None:
            counts[key] = [1, units if billed else 0, latency]
        else:
            found[0] += 1
            if billed:
                found[1] += units
            found[2] += latency
    return sorted([(*key, c[0], c[1], c[2]) for key, c in counts.items()])
