"""The application factory: builds the runtime, wires routers, middleware and error handlers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from novo_gateway import __version__
from novo_gateway.accounts.key_routes import router as keys_router
from novo_gateway.accounts.models import User
from novo_gateway.accounts.routes import router as accounts_router
from novo_gateway.admin.routes import router as admin_router
from novo_gateway.background_jobs import build_job_runner
from novo_gateway.billing import provisioning
from novo_gateway.billing.reporter import UsageReporter
from novo_gateway.billing.routes import router as billing_router
from novo_gateway.billing.stripe_client import StripeBilling
from novo_gateway.billing.usage_routes import router as usage_router
from novo_gateway.billing.webhook_routes import router as webhook_router
from novo_gateway.billing.webhooks import WebhookWorker
from novo_gateway.dashboard.assets import router as assets_router
from novo_gateway.dashboard.reset_routes import router as dashboard_reset_router
from novo_gateway.dashboard.routes import router as dashboard_router
from novo_gateway.error_handlers import install_error_handlers
from novo_gateway.gateway.access import AccessPolicy
from novo_gateway.gateway.fast_path import FastPath
from novo_gateway.gateway.idempotency import Idempotency
from novo_gateway.gateway.middleware import MeteredMiddleware
from novo_gateway.gateway.pipeline import MeteredPipeline
from novo_gateway.gateway.proxy import UpstreamProxy
from novo_gateway.home.docs import router as docs_router
from novo_gateway.home.routes import router as home_router
from novo_gateway.host_split import HostSplit, HostSplitMiddleware
from novo_gateway.keys.cache import KeyCache
from novo_gateway.kit import metrics
from novo_gateway.kit.clock import Clock
from novo_gateway.kit.config import Settings
from novo_gateway.kit.db import create_engine, create_session_factory
from novo_gateway.kit.http_middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from novo_gateway.kit.limiter import RateLimiter
from novo_gateway.kit.logs import configure_logging
from novo_gateway.metering.reads import AccountReads
from novo_gateway.metering.writer import UsageWriter
from novo_gateway.novo_api.endpoints import API_PREFIX, BUILTIN_PATHS
from novo_gateway.novo_api.fast import FastRoutes
from novo_gateway.novo_api.routes import router as novo_router
from novo_gateway.openapi import install_openapi
from novo_gateway.runtime import Runtime


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> GatewayApp:
    """Build the gateway. Its runtime (database, caches, writers) starts with the lifespan."""
    settings = settings or Settings()
    runtime = build_runtime(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if getattr(app, "freeze_gc", False):
            # Everything built so far lives as long as the process: out of the collector's
            # sight, a full collection under load walks only request garbage (bench/README.md).
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await runtime.stop()

    app = GatewayApp(
        title="Novo Gateway",
        version=__version__,
        description="Usage-billed access to the Novo marketing API.",
        lifespan=lifespan,
        # Served from local assets under a CSP of our own (home/docs.py), not from a CDN.
        docs_url=None,
        redoc_url=None,
        # No OpenTelemetry: metrics are Prometheus (/metrics). Left on, FastAPI asks the global
        # OpenTelemetry providers on every request whether they are configured.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    publish(app, runtime)
    install_error_handlers(app)
    install_openapi(app)
    for router in (
        home_router,
        accounts_router,
        keys_router,
        usage_router,
        billing_router,
        webhook_router,
        novo_router,
        dashboard_router,
        dashboard_reset_router,
        admin_router,
        assets_router,
        docs_router,
    ):
        app.include_router(router)

    # Added last runs first: context (request id, access log) → body limit → metered path.
    pipeline = MeteredPipeline(
        settings,
        clock=runtime.clock,
        keys=runtime.keys,
        limiter=runtime.limiter,
        access=runtime.access,
        idempotency=runtime.idempotency,
        usage=runtime.usage,
        proxy=runtime.proxy,
    )
    app.add_middleware(MeteredMiddleware, pipeline=pipeline)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.dashboard_host:  # the dashboards on a host of their own (host_split.py)
        app.host_split = HostSplit(settings.dashboard_host, settings.public_url)
        app.add_middleware(HostSplitMiddleware, split=app.host_split)
    app.add_middleware(RequestContextMiddleware)
    # The built-in endpoints skip all of the above in one pass (gateway/fast_path.py).
    app.fast_path = FastPath(FastRoutes(novo_router.routes), pipeline, app.full_stack)
    metrics.name_paths(API_PREFIX, BUILTIN_PATHS)
    return app


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    """Every long-lived part of one process, wired together (the lifespan starts them)."""
    clock = clock or Clock()
    engine = create_engine(settings)
    sessions = create_session_factory(engine)
    runtime = Runtime(
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        keys=KeyCache(sessions, clock, revalidate_ms=settings.key_revalidate_ms),
        limiter=RateLimiter(settings, clock),
        usage=UsageWriter(sessions, clock),
        access=AccessPolicy(sessions, settings, clock),
        proxy=UpstreamProxy(settings),
        idempotency=Idempotency(
            sessions,
            clock,
            max_answer_bytes=settings.idempotency_max_answer_bytes,
            wait_seconds=settings.idempotency_wait_seconds,
            lock_seconds=settings.idempotency_lock_seconds,
        ),
        reads=AccountReads(
            per_account=settings.usage_reads_per_account,
            timeout_seconds=settings.usage_read_timeout_seconds,
        ),
    )
    if settings.stripe_secret_key:
        runtime.stripe = StripeBilling(settings, clock)
        runtime.reporter = UsageReporter(sessions, runtime.stripe, settings, clock)
        if settings.usage_reporting_interval > 0:
            runtime.workers.append(runtime.reporter)
    runtime.webhooks = WebhookWorker(
        sessions, clock, runtime.stripe, on_access_change=runtime.access.forget
    )
    runtime.workers += [runtime.access, runtime.webhooks]
    if runtime.limiter.shared:  # re-seeds its leases when Redis loses them
        runtime.workers.append(runtime.limiter)
    # The jobs outbox (Stripe provisioning, ...); register kicks it and waits briefly.
    runtime.jobs = build_job_runner(settings, sessions, clock, runtime.stripe)
    runtime.workers.append(runtime.jobs)
    return runtime


def publish(app: FastAPI, runtime: Runtime) -> None:
    """Put on `app.state` what the routes' dependencies fetch (kit.deps, keys.deps, ...)."""
    state = app.state
    state.runtime = runtime  # the pages' `RuntimeDep`
    state.settings = runtime.settings
    state.clock = runtime.clock
    state.sessions = runtime.sessions
    state.limiter = runtime.limiter
    state.keys = runtime.keys
    state.account_reads = runtime.reads
    state.stripe = runtime.stripe  # None without STRIPE_SECRET_KEY, as are the reporter and
    state.reporter = runtime.reporter  # (when nothing runs it) the webhook worker
    state.webhooks = runtime.webhooks
    state.forget_access = runtime.access.forget

    async def await_provisioning(user: User, job_id: int) -> User:
        return await provisioning.await_provisioning(
            runtime.jobs, runtime.sessions, user=user, job_id=job_id
        )

    state.await_provisioning = await_provisioning


def create_served_app() -> GatewayApp:
    """The app as `novo-gateway serve` runs it: the process is the app's alone (gc frozen).

    Each worker process builds its own app here, so it also sets up its own JSON logs."""
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    app.freeze_gc = True
    return app


class GatewayApp(FastAPI):
    """FastAPI, with the fast path answering its few requests before the middleware stack."""

    fast_path: FastPath | None = None
    host_split: HostSplit | None = None  # set with DASHBOARD_HOST; its refusals take the full stack
    freeze_gc: bool = False  # gc.freeze() after start-up (only for a process of its own)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        route = fast.match(scope) if fast is not None else None
        if route is not None and self.host_split is not None and self.host_split.refusal(scope):
            route = None
        if route is not None:
            await fast.serve(route, scope, receive, send)  # type: ignore[union-attr]
            return
        await super().__call__(scope, receive, send)

    async def full_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app without its fast path: the middleware stack, FastAPI's routing and handlers."""
        await super().__call__(scope, receive, send)
