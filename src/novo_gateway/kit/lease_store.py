"""The Redis side of leased limits, kept exact when Redis loses its counters.

A window of a leased limit is one Redis hash: a field per gateway process holding the tokens that
process was granted in the window; the window's count is the sum of the fields. One Lua script
does a lease atomically: it first puts back the caller's own field if it is smaller than what the
caller knows it was granted (re-seeding after a loss), then grants at most the tokens still under
the limit and adds them to the caller's field.

Redis restarted without persistence (or evicted the keys) loses every field at once, and a process
learns it only when it next talks to Redis. So that no process hands out tokens before the others
have put theirs back, a key without expiry, the generation, names the Redis data set: the first
script that finds it missing writes a new one. A process that had seen another generation knows
the counters were lost, and the script then sets a short hold (`RECOVERY_HOLD_MS`) during which
no new token is granted: every process holding tokens of the current window re-seeds them within
it, through its heartbeat (`RateLimiter.run_forever`, every `HEARTBEAT_SECONDS`). After the hold
the count is again the sum of what every live process was granted.

What stays uncovered: a process that was never told of any generation (it started after the loss
and before anyone with history noticed) cannot recognise the loss, so its leases until the first
heartbeat of another process may pass the limit; and a process that stops (its tokens are gone
with it, spent or not) cannot re-seed, which only matters if Redis is lost in the same window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from redis.asyncio import ConnectionPool, Redis

# How long, after a loss is noticed, new tokens wait for every process to re-seed its own.
RECOVERY_HOLD_MS = 2000
# How often a process holding tokens of the current window checks the generation.
HEARTBEAT_SECONDS = 0.5

# KEYS: window hash, generation, hold. ARGV: process, its tokens in the window, block, limit,
# window expiry (s), the generation the process knows ('' if none), a new generation, hold (ms).
LEASE_SCRIPT = """
local generation = redis.call('GET', KEYS[2])
if not generation then
  generation = ARGV[7]
  redis.call('SET', KEYS[2], generation)
end
if ARGV[6] ~= '' and generation ~= ARGV[6] then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[8], 'NX')
end
local mine = tonumber(ARGV[2])
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if held < mine then
  redis.call('HSET', KEYS[1], ARGV[1], mine)
end
local total = 0
for _, value in ipairs(redis.call('HVALS', KEYS[1])) do
  total = total + tonumber(value)
end
local granted = 0
local hold = redis.call('EXISTS', KEYS[3])
if hold == 0 then
  granted = math.max(0, math.min(tonumber(ARGV[3]), tonumber(ARGV[4]) - total))
  if granted > 0 then
    redis.call('HINCRBY', KEYS[1], ARGV[1], granted)
  end
end
if total + granted > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return {total + granted, granted, generation, hold}
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to one lease."""

    total: int  # the window's count after it (every process's tokens)
    granted: int  # the tokens given to this process now
    held: bool  # the counters were lost a moment ago: no tokens until every process re-seeds
    lost: bool  # this process has just learnt that Redis lost the counters


class LeaseStore:
    """One process's leases in Redis: `lease` grants tokens, re-seeding the process's own."""

    def __init__(self, pool: ConnectionPool, prefix: str) -> None:
        self._redis = Redis(connection_pool=pool)
        self._script = self._redis.register_script(LEASE_SCRIPT)
        self._prefix = prefix
        self.process = uuid.uuid4().hex[:16]  # this process's field in every window hash
        self._generation = ""  # the generation of Redis's data this process last saw
        self._generation_key = f"{prefix}:rl-lease/generation"
        self._hold_key = f"{prefix}:rl-lease/recovering"
        self.hold_ms = RECOVERY_HOLD_MS

    def key(self, bucket: str, identity: str, per_seconds: int, reset_at: int) -> str:
        """The hash of one window (named by its end, as the clock picks it)."""
        return f"{self._prefix}:rl-lease/{bucket}/{identity}/{per_seconds}/{reset_at}"

    async def lease(self, key: str, mine: int, block: int, limit: int, expiry: int) -> Grant:
        """Re-seed `mine` (this process's tokens in the window) if Redis lost them, then grant
        up to `block` more tokens under `limit`. Raises redis' errors when Redis is unreachable."""
        total, granted, generation, hold = await self._script(
            keys=[key, self._generation_key, self._hold_key],
            args=[
                self.process,
                mine,
                block,
                limit,
                expiry,
                self._generation,
                uuid.uuid4().hex,
                self.hold_ms,
            ],
        )
        generation = generation.decode() if isinstance(generation, bytes) else str(generation)
        lost = self._generation not in ("", generation)
        self._generation = generation
        return Grant(int(total), int(granted), bool(hold), lost)

    async def unchanged(self) -> bool:
        """Whether Redis still holds the generation this process last saw (one GET)."""
        found = await self._redis.get(self._generation_key)
        if isinstance(found, bytes):
            found = found.decode()
        return found is not None and found == self._generation
