"""report resends: how many times an operator put a usage report back in the queue; each resend
goes to Stripe under its own meter event identifier

Revision ID: 0010_report_resends
Revises: 0009_usage_endpoint_daily
Create Date: 2026-12-06 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_report_resends"
down_revision: str | None = "0009_usage_endpoint_daily"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        table.add_column(sa.Column("resends", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_reports") as table:
        table.drop_column("resends")
