"""auth: operator sign-ins kept on the server (revoked at sign-out), single-use password reset
tokens (stored hashed), and account emails re-keyed by RFC 8265's UsernameCaseMapped mapping

Revision ID: 0008_auth
Revises: 0004_usage_daily
Create Date: 2026-12-06 08:00:00.000000
"""

import logging
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_auth"
down_revision: str | None = "0007_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _canonical(email: str) -> str:
    """The gateway's email mapping as of this revision (width map, case fold, NFC).

    A copy on purpose: a migration must keep doing what it did when it was written.
    """
    mapped = "".join(
        unicodedata.normalize("NFKC", char)
        if unicodedata.decomposition(char).startswith(("<wide>", "<narrow>"))
        else char
        for char in email
    )
    return unicodedata.normalize("NFC", mapped.casefold())


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_sessions_token_hash")),
    )
    op.create_table(
        "password_reset_tokens",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_password_reset_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_reset_tokens_token_hash")),
    )
    op.create_index(op.f("ix_password_reset_tokens_user_id"), "password_reset_tokens", ["user_id"])
    _rekey_emails()


def _rekey_emails() -> None:
    """Store every email in its new canonical form; only non-ASCII addresses can change.

    Two accounts whose emails now map to one (the lookalike accounts this mapping prevents from
    now on) cannot both hold it: the older keeps it, the other is left as it was and named in
    the migration's log for the operator to merge or contact. Its API keys and sessions work.
    """
    bind = op.get_bind()
    users = sa.table("users", sa.column("id", BigId), sa.column("email", sa.String(320)))
    rows = bind.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    taken = {email for _id, email in rows}
    for user_id, email in rows:
        canonical = _canonical(email)
        if canonical == email:
            continue
        if canonical in taken:
            log.warning(
                "account %s: its email maps to one another account already has; left as is",
                user_id,
            )
            continue
        bind.execute(users.update().where(users.c.id == user_id).values(email=canonical))
        taken.discard(email)
        taken.add(canonical)


def downgrade() -> None:
    # Re-keyed emails keep their canonical form: the mapping cannot be undone (it folds several
    # spellings into one), and only non-ASCII addresses were changed.
    op.drop_index(op.f("ix_password_reset_tokens_user_id"), table_name="password_reset_tokens")
    op.drop_table("password_reset_tokens")
    op.drop_table("admin_sessions")
