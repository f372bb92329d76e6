"""lifecycle: when an account's first billing period started (its calls made before, while it
was pending, belong to that period), and when a job finished (done jobs are pruned after a week)

Revision ID: 0007_lifecycle
Revises: 0004_usage_daily
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lifecycle"
down_revision: str | None = "0006_late_usage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("billing_started_at", sa.DateTime(timezone=True)))
    # Accounts subscribed before this revision: nothing of theirs predates their start any more
    # (their account's creation stands in for it), so no usage is moved into another period.
    op.execute("UPDATE users SET billing_started_at = created_at WHERE subscription_id IS NOT NULL")
    op.add_column("jobs", sa.Column("finished_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+ has it): a batch copy of `users` would drop the table that
    # other tables' foreign keys point at.
    op.drop_column("jobs", "finished_at")
    op.drop_column("users", "billing_started_at")
