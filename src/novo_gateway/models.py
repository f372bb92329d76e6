"""Imports every table so that `Base.metadata` is complete (for Alembic and the tests)."""

from novo_gateway.accounts.models import LoginSession, PasswordResetToken, User
from novo_gateway.admin.models import AdminSession
from novo_gateway.billing.models import UsageReport, WebhookEvent, WorkerLease
from novo_gateway.gateway.models import IdempotentRequest
from novo_gateway.jobs.models import Job
from novo_gateway.keys.models import ApiKey
from novo_gateway.kit.db import Base
from novo_gateway.metering.models import UsageEvent, UsageIdempotencyKey

__all__ = [
    "AdminSession",
    "ApiKey",
    "Base",
    "IdempotentRequest",
    "Job",
    "LoginSession",
    "PasswordResetToken",
    "UsageEvent",
    "UsageIdempotencyKey",
    "UsageReport",
    "User",
    "WebhookEvent",
    "WorkerLease",
]
