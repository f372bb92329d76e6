"""The `idempotent_requests` table: claim a key, take over an expired claim, store the answer.

Every change is one short transaction of its own, and every statement that hands a key to a
request is a single conditional write, so the database decides who runs a request, also between
gateway processes sharing it:

- `insert` claims a new key (INSERT .. ON CONFLICT DO NOTHING): the unique `(user_id, key)`
  lets exactly one of any number of concurrent claims in;
- `take_over` claims a key whose row has expired (past the 24-hour window, or a claim whose
  holder stopped renewing it), only if the row still has the holder it was seen with;
- `complete`, `release` and `extend` change a row only while the caller still holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from novo_gateway.gateway.models import IdempotentRequest, IdempotentRequestState
from novo_gateway.kit.db import SessionFactory, session_scope

_TABLE: Table = IdempotentRequest.__table__  # type: ignore[assignment]
RUNNING, DONE = IdempotentRequestState.RUNNING, IdempotentRequestState.DONE


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to run one request: the row, and the token that proves it is still ours."""

    row_id: int
    owner: str
    user_id: int
    key: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A response as a retry gets it again. `body` is None when it was too large to keep."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes | None
    body_bytes: int
    endpoint: str
    units: int
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Seen:
    """A key's row as another request found it."""

    row_id: int
    owner: str
    fingerprint: str
    state: str
    created_at: datetime
    locked_until: datetime
    answer: Answer | None  # only when DONE


class IdempotencyStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def insert(
        self,
        user_id: int,
        key: str,
        fingerprint: str,
        owner: str,
        now: datetime,
        locked_until: datetime,
    ) -> int | None:
        """Claim a key nobody holds; the new row's id, or None when the key has a row."""
        values = {
            "user_id": user_id,
            "key": key,
            "fingerprint": fingerprint,
            "state": RUNNING,
            "owner": owner,
            "created_at": now,
            "locked_until": locked_until,
        }
        async with session_scope(self._sessions) as session:
            dialect = session.get_bind().dialect.name
            stmt: Any = (pg_insert if dialect == "postgresql" else sqlite_insert)(_TABLE)
            stmt = (
                stmt.values(values)
                .on_conflict_do_nothing(index_elements=[_TABLE.c.user_id, _TABLE.c.key])
                .returning(_TABLE.c.id)
            )
            row_id = (await session.execute(stmt)).scalar_one_or_none()
        return None if row_id is None else int(row_id)

    async def get(self, user_id: int, key: str) -> Seen | None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(IdempotentRequest).where(
                    IdempotentRequest.user_id == user_id, IdempotentRequest.key == key
                )
            )
            return None if row is None else _seen(row)

    async def take_over(
        self,
        seen: Seen,
        fingerprint: str,
        owner: str,
        created_at: datetime,
        locked_until: datetime,
        window_start: datetime,
        now: datetime,
    ) -> bool:
        """Claim a row as seen if it expired: older than `window_start`, or a claim that lapsed
        before `now`."""
        c = _TABLE.c
        stmt = (
            update(_TABLE)
            .where(
                c.id == seen.row_id,
                c.owner == seen.owner,
                or_(
                    c.created_at <= window_start,
                    (c.state == RUNNING) & (c.locked_until <= now),
                ),
            )
            .values(
                fingerprint=fingerprint,
                state=RUNNING,
                owner=owner,
                created_at=created_at,
                locked_until=locked_until,
                status=None,
                headers=None,
                body=None,
                body_bytes=None,
                endpoint=None,
                units=None,
                request_id=None,
            )
        )
        return await self._changed(stmt)

    async def extend(self, claim: Claim, locked_until: datetime) -> bool:
        """Renew a running claim; False when it is no longer ours."""
        c = _TABLE.c
        stmt = (
            update(_TABLE)
            .where(c.id == claim.row_id, c.owner == claim.owner, c.state == RUNNING)
            .values(locked_until=locked_until)
        )
        return await self._changed(stmt)

    async def complete(self, claim: Claim, answer: Answer) -> bool:
        """Store the answer of a claimed request; False when the claim was no longer ours."""
        c = _TABLE.c
        stmt = (
            update(_TABLE)
            .where(c.id == claim.row_id, c.owner == claim.owner, c.state == RUNNING)
            .values(
                state=DONE,
                status=answer.status,
                headers=orjson.dumps(answer.headers).decode(),
                body=answer.body,
                body_bytes=answer.body_bytes,
                endpoint=answer.endpoint,
                units=answer.units,
                request_id=answer.request_id,
            )
        )
        return await self._changed(stmt)

    async def release(self, claim: Claim) -> None:
        """Give a key back unanswered (the request failed): the next retry runs it."""
        c = _TABLE.c
        stmt = delete(_TABLE).where(
            c.id == claim.row_id, c.owner == claim.owner, c.state == RUNNING
        )
        await self._changed(stmt)

    async def purge(self, window_start: datetime, now: datetime) -> int:
        """Delete the rows of keys past their window (not a claim still being renewed)."""
        c = _TABLE.c
        stmt = delete(_TABLE).where(
            c.created_at <= window_start, or_(c.state == DONE, c.locked_until <= now)
        )
        async with session_scope(self._sessions) as session:
            result: Any = await session.execute(stmt)
            return int(result.rowcount or 0)

    async def _changed(self, stmt: Any) -> bool:
        async with session_scope(self._sessions) as session:
            result: Any = await session.execute(stmt)
            return bool(result.rowcount == 1)


def _seen(row: IdempotentRequest) -> Seen:
    answer = None
    if row.state == DONE and row.status is not None:
        answer = Answer(
            status=row.status,
            headers=[(str(k), str(v)) for k, v in orjson.loads(row.headers or "[]")],
            body=row.body,
            body_bytes=row.body_bytes or 0,
            endpoint=row.endpoint or "",
            units=row.units or 0,
            request_id=row.request_id,
        )
    return Seen(
        row_id=row.id,
        owner=row.owner,
        fingerprint=row.fingerprint,
        state=row.state,
        created_at=row.created_at,
        locked_until=row.locked_until,
        answer=answer,
    )
