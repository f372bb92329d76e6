"""usage daily: the ledger's running counter per account and UTC day, backfilled from the events;
the reporter's index holds only pending events (keyed by account on PostgreSQL, where equal keys
share an entry, by id on SQLite, where new entries then land on one page); on PostgreSQL the
events' columns are stored fixed-width first (no alignment padding) and request ids as bytes

Revision ID: 0004_usage_daily
Revises: 0003_subscription_state
Create Date: 2026-11-26 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_usage_daily"
down_revision: str | None = "0003_subscription_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The events' columns as PostgreSQL stores them from this revision on: 8-byte, 4-byte, 2-byte and
# 1-byte fixed-width columns, then the variable-length ones (which need no alignment), so a row
# carries no padding between columns.
_POSTGRES_ORDER = (
    "id",
    "user_id",
    "api_key_id",
    "created_at",
    "latency_ms",
    "units",
    "status",
    "billable",
    "method",
    "endpoint",
    "request_id",
    "idempotency_key",
    "report_id",
)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "usage_daily",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("billable_units", sa.BigInteger(), nullable=False),
        sa.Column("unbilled_calls", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_usage_daily_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_usage_daily")),
        sqlite_with_rowid=False,
    )
    if postgres:
        # Each batch updates its accounts' rows: room on every page keeps the new versions
        # there (heap-only updates, the old ones pruned in place), so the table stays small
        # without waiting for VACUUM.
        op.execute("ALTER TABLE usage_daily SET (fillfactor = 50)")
    if postgres:
        _store_events_fixed_width_first()
    else:
        with op.batch_alter_table("usage_events", schema=None) as batch_op:
            batch_op.drop_index("ix_usage_events_unreported")
        op.create_index(
            "ix_usage_events_unreported",
            "usage_events",
            ["id"],
            sqlite_where=sa.text("report_id IS NULL AND billable IS 1"),
        )
    day = "(created_at AT TIME ZONE 'UTC')::date" if postgres else "date(created_at)"
    op.execute(
        "INSERT INTO usage_daily (user_id, day, calls, billable_units, unbilled_calls) "  # noqa: S608
        f"SELECT user_id, {day}, count(*), "
        "coalesce(sum(CASE WHEN billable THEN units ELSE 0 END), 0), "
        "coalesce(sum(CASE WHEN billable THEN 0 ELSE 1 END), 0) "
        f"FROM usage_events GROUP BY user_id, {day}"
    )


def _store_events_fixed_width_first() -> None:
    """Rebuild `usage_events` with its columns in `_POSTGRES_ORDER` (same names, types, ids)."""
    op.execute("ALTER TABLE usage_events RENAME TO usage_events_old")
    op.execute(
        "ALTER TABLE usage_events_old RENAME CONSTRAINT pk_usage_events TO pk_usage_events_old"
    )
    op.execute("DROP INDEX ix_usage_events_user_created")
    op.execute("DROP INDEX ix_usage_events_unreported")
    op.execute(
        """
        CREATE TABLE usage_events (
            id BIGINT NOT NULL DEFAULT nextval('usage_events_id_seq'),
            user_id BIGINT NOT NULL,
            api_key_id BIGINT NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE NOT NULL,
            latency_ms INTEGER NOT NULL,
            units INTEGER NOT NULL,
            status SMALLINT NOT NULL,
            billable BOOLEAN NOT NULL,
            method VARCHAR(8) NOT NULL,
            endpoint VARCHAR(200) NOT NULL,
            request_id BYTEA,
            idempotency_key VARCHAR(255),
            report_id VARCHAR(100),
            CONSTRAINT pk_usage_events PRIMARY KEY (id),
            CONSTRAINT fk_usage_events_user_id_users
                FOREIGN KEY (user_id) REFERENCES users (id),
            CONSTRAINT fk_usage_events_api_key_id_api_keys
                FOREIGN KEY (api_key_id) REFERENCES api_keys (id)
        )
        """
    )
    columns = ", ".join(_POSTGRES_ORDER)
    # `metering.models.encode_request_id`, in SQL: 32 hex digits as their 16 bytes, any other
    # id as its UTF-8 after one zero byte (two when that would make 16 bytes).
    text = "convert_to(request_id, 'UTF8')"
    request_id = (
        "CASE WHEN request_id IS NULL THEN NULL "
        "WHEN request_id ~ '^[0-9a-f]{32}$' THEN decode(request_id, 'hex') "
        f"WHEN octet_length({text}) = 15 THEN '\\x0000'::bytea || {text} "
        f"ELSE '\\x00'::bytea || {text} END"
    )
    selected = columns.replace("request_id", request_id)
    op.execute(
        f"INSERT INTO usage_events ({columns}) "  # noqa: S608
        f"SELECT {selected} FROM usage_events_old ORDER BY id"
    )
    op.execute("ALTER SEQUENCE usage_events_id_seq OWNED BY usage_events.id")
    op.execute("DROP TABLE usage_events_old")
    op.execute("CREATE INDEX ix_usage_events_user_created ON usage_events (user_id, created_at)")
    op.execute(
        "CREATE INDEX ix_usage_events_unreported ON usage_events (user_id) "
        "WHERE report_id IS NULL AND billable IS true"
    )


def downgrade() -> None:
    """The indexes and request ids as before (PostgreSQL keeps the new column order)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE usage_events ALTER COLUMN request_id TYPE VARCHAR(64) USING "
            "CASE WHEN octet_length(request_id) = 16 THEN encode(request_id, 'hex') "
            "ELSE convert_from(ltrim(request_id, '\\x00'::bytea), 'UTF8') END"
        )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_events_unreported")
        batch_op.create_index(
            "ix_usage_events_unreported", ["report_id", "billable", "created_at"], unique=False
        )
    op.drop_table("usage_daily")
