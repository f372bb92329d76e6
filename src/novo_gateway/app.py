"""The application factory: routers, middleware, error handlers and the runtime's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from novo_gateway import __version__
from novo_gateway.accounts.routes import router as accounts_router
from novo_gateway.admin.routes import router as admin_router
from novo_gateway.billing.routes import router as billing_router
from novo_gateway.billing.webhook_routes import router as webhook_router
from novo_gateway.clock import Clock
from novo_gateway.config import Settings
from novo_gateway.dashboard.assets import router as assets_router
from novo_gateway.dashboard.routes import router as dashboard_router
from novo_gateway.error_handlers import install_error_handlers
from novo_gateway.gateway.middleware import MeteredPathMiddleware
from novo_gateway.home.routes import router as home_router
from novo_gateway.http_middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from novo_gateway.keys.routes import router as keys_router
from novo_gateway.metering.routes import router as usage_router
from novo_gateway.novo_api.routes import router as novo_router
from novo_gateway.openapi import install_openapi
from novo_gateway.runtime import Runtime


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the gateway. Its runtime (database, caches, writers) starts with the lifespan."""
    settings = settings or Settings()
    runtime = Runtime.build(settings, clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Novo Gateway",
        version=__version__,
        description="Usage-billed access to the Novo marketing API.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
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
        admin_router,
        assets_router,
    ):
        app.include_router(router)

    # Added last runs first: context (request id, access log) → body limit → metered path.
    app.add_middleware(MeteredPathMiddleware, runtime=runtime)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app
