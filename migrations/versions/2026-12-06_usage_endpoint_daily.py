"""usage endpoint daily: per account, UTC day, endpoint, method and latency bucket, the calls,
billed units and latency sum of the events (a histogram per day, so the endpoint view adds days
and still gives a p95), backfilled from the events

Revision ID: 0009_usage_endpoint_daily
Revises: 0004_usage_daily
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_usage_endpoint_daily"
down_revision: str | None = "0008_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _bucket_sql(column: str) -> str:
    """`metering.endpoint_daily.latency_bucket` in SQL (both databases): one bucket per ms under
    16, then 8 buckets per power of two. Written out here: a migration keeps its own copy."""
    ms = f"(CASE WHEN {column} < 0 THEN 0 ELSE {column} END)"
    cases = [f"WHEN {ms} < 16 THEN {ms}"]
    for exponent in range(4, 31):
        first = 16 + (exponent - 4) * 8
        cases.append(
            f"WHEN {ms} < {2 ** (exponent + 1)} THEN {first} + (({ms} >> {exponent - 3}) & 7)"
        )
    cases.append(f"ELSE {16 + 26 * 8 + 7}")
    return "CASE " + " ".join(cases) + " END"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "usage_endpoint_daily",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("billable_units", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_usage_endpoint_daily_user_id_users")
        ),
        sa.PrimaryKeyConstraint(
            "user_id", "day", "endpoint", "method", "bucket", name=op.f("pk_usage_endpoint_daily")
        ),
        sqlite_with_rowid=False,
    )
    if postgres:  # as usage_daily: room on each page for the new versions of its rows
        op.execute("ALTER TABLE usage_endpoint_daily SET (fillfactor = 50)")
    day = "(created_at AT TIME ZONE 'UTC')::date" if postgres else "date(created_at)"
    bucket = _bucket_sql("latency_ms")
    op.execute(
        "INSERT INTO usage_endpoint_daily "  # noqa: S608
        "(user_id, day, endpoint, method, bucket, calls, billable_units, latency_ms_sum) "
        f"SELECT user_id, {day}, endpoint, method, {bucket}, count(*), "
        "coalesce(sum(CASE WHEN billable THEN units ELSE 0 END), 0), "
        "coalesce(sum(latency_ms), 0) "
        f"FROM usage_events GROUP BY user_id, {day}, endpoint, method, {bucket}"
    )


def downgrade() -> None:
    op.drop_table("usage_endpoint_daily")
