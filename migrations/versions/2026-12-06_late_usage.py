"""late usage: a report whose period's invoice was already finalized is carried over to the next
invoice as an invoice item; the report keeps the item's id, its amount in cents and the end of
the period it belongs to

Revision ID: 0006_late_usage
Revises: 0004_usage_daily
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_late_usage"
down_revision: str | None = "0005_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("carried_invoice_item", "carried_cents", "carried_period_end")


def upgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        table.add_column(sa.Column("carried_invoice_item", sa.String(255), nullable=True))
        table.add_column(sa.Column("carried_cents", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("carried_period_end", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        for name in _COLUMNS:
            table.drop_column(name)
