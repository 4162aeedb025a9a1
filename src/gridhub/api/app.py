"""``create_app(hub)``: the FastAPI application over a built hub."""

from __future__ import annotations

from fastapi import FastAPI

from gridhub import __version__
from gridhub.access.audit import AuditMiddleware
from gridhub.api import errors
from gridhub.api.body_limit import BodyLimitMiddleware
from gridhub.api.routes import (
    access,
    commands,
    faults,
    grid,
    health,
    imports,
    ingest,
    market,
    query,
    reports,
    subscriptions,
    tariffs,
    telegrams,
    tenants,
    topology,
)
from gridhub.api.routes import devices as devices_routes
from gridhub.hub import Hub
from gridhub.web import routes as web


def create_app(hub: Hub) -> FastAPI:
    app = FastAPI(
        title="gridhub",
        version=__version__,
        description="Open-source data hub for smart grids. Every /api route needs "
        "`Authorization: Bearer <token>`; tokens are scoped to one tenant.",
    )
    app.state.hub = hub
    errors.install(app)
    for module in (
        health,
        tenants,
        ingest,
        imports,
        telegrams,
        query,
        faults,
        topology,
        commands,
        tariffs,
        reports,
        subscriptions,
        grid,
        market,
    ):
        app.include_router(module.router)
    app.include_router(query.admin_router)
    for router in (devices_routes.router, devices_routes.admin_router):
        app.include_router(router)
    web.install(app)
    app.include_router(access.router)
    app.include_router(access.admin_router)
    app.add_middleware(AuditMiddleware, audit=hub.audit)  # one audit entry per /api request
    app.add_middleware(BodyLimitMiddleware)  # outermost: before anything reads a body
    return app
