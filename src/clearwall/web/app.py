"""The web app: admin API, public transparency portal, HTTP 451 block pages, log routes.

How the gateway starts it (``clearwall serve``)::

    from clearwall.web.app import create_app, create_blockpage_app
    app = create_app(config, store_url,
                     snapshot_provider=lambda: gateway.snapshot,   # the live PolicySnapshot
                     metrics_registry=gateway.registry)           # its prometheus registry
    # serve `app` on config.web.listen with uvicorn; if config.web.blockpage_listen is set,
    # serve create_blockpage_app(config, store_url, snapshot_provider=…) there as well.

- ``snapshot_provider`` returns the snapshot the DNS data plane enforces right now, so the
  portal and the block pages say exactly what the gateway does. Without it (standalone
  app) the app compiles its own snapshot from the store whenever the log grows.
- ``metrics_registry`` holds the gateway's Prometheus counters; the statistics page shows
  blocked-query totals by ``category`` label from counters whose name mentions ``block``
  (aggregates only, never per client). The app registers its own counter
  (``clearwall_api_scope_denied_total``) in the same registry and serves it on ``/metrics``.
- Requests whose ``Host`` is a name blocked for the client get the block page (451 for
  legal orders, 403 for operator security blocks) instead of the portal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from clearwall.config import Config
from clearwall.errors import (
    ClearwallError,
    Conflict,
    FormatError,
    InvalidName,
    NotFound,
    ScopeError,
    StoreError,
)
from clearwall.federation import metrics as mirror_metrics
from clearwall.ledger.log import TransparencyLog
from clearwall.store.db import Store
from clearwall.store.reader import PolicyReader
from clearwall.store.service import PolicyService
from clearwall.store.tokens import TokenStore
from clearwall.web import blockpage, console, health
from clearwall.web.api import api_router
from clearwall.web.auth import check_authorization, scope_counter
from clearwall.web.bodylimit import BodyLimitMiddleware
from clearwall.web.context import (
    STATIC_DIR,
    TEMPLATES_DIR,
    SnapshotProvider,
    StoreSnapshots,
    WebContext,
)
from clearwall.web.i18n import translator
from clearwall.web.portal import portal_router
from clearwall.web.portal.render import install_filters
from clearwall.web.queries import StatsCache
from clearwall.web.security import CSRFProtector, SecurityHeadersMiddleware, SubmissionLimiter

log = logging.getLogger(__name__)

API_DESCRIPTION = """\
The admin API of a clearwall gateway. Authenticate with `Authorization: Bearer <token>`
(tokens come from `clearwall tokens create`). Roles: **operator** (everything),
**authority** (orders and appeals of its own jurisdiction only; anything else is 403
and counted), **auditor** (read-only, including appellants' contacts). Every write is
published on the transparency log in the same transaction. `GET /api/v1/lookup` is public.
Request bodies are at most 64 KiB (64 MiB to publish or amend an order, read only with a
valid token); larger ones are answered 413 before they are read.
"""


def _status_for(exc: ClearwallError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, ScopeError):
        return 403
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InvalidName | FormatError | StoreError):
        return 400
    return 400


def build_context(
    config: Config,
    store_url: str,
    snapshot_provider: SnapshotProvider | None,
    metrics_registry: CollectorRegistry | None,
) -> WebContext:
    """Open the store and assemble every dependency the routes use."""
    from clearwall.layout import resolve_ledger

    store = Store(store_url)
    store.require_initialized()
    tlog = TransparencyLog(store, resolve_ledger(config.ledger, store_url))
    service = PolicyService(store, after_commit=lambda: _sync(tlog))
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    base_url = config.dns.block.public_url.rstrip("/")
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals["base_url"] = base_url
    templates.env.globals["operator"] = config.dns.block.operator
    templates.env.globals["t"] = translator(config.dns.block.language)
    install_filters(templates.env)
    return WebContext(
        config=config,
        store=store,
        service=service,
        reader=PolicyReader(store),
        tokens=TokenStore(store),
        snapshot=snapshot_provider or StoreSnapshots(store, base_url),
        registry=registry,
        scope_denied=scope_counter(registry),
        templates=templates,
        csrf=CSRFProtector(),
        appeal_limiter=SubmissionLimiter(),
        stats=StatsCache(store),
        tlog=tlog,
        gateway_metrics=metrics_registry is not None,
    )


def _sync(tlog: TransparencyLog) -> None:
    """Publish new entries as tiles and a signed checkpoint after each committed write."""
    tlog.sync()


def _install_error_handlers(app: FastAPI) -> None:
    """Clearwall errors become one-sentence JSON on the API and a page on the portal."""

    async def clearwall_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClearwallError)
        status = _status_for(exc)
        if isinstance(exc, ScopeError):
            request.app.state.ctx.scope_denied.labels(reason="jurisdiction").inc()
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return error_page(request, status, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith(("/api/", "/log/")):
            return JSONResponse(
                {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
            )
        return error_page(request, exc.status_code, str(exc.detail))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": _jsonable(exc.errors())}, status_code=422)
        return error_page(request, 400, "The request was not understood.")

    app.add_exception_handler(ClearwallError, clearwall_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def _jsonable(errors: object) -> object:
    """Validation errors without the raw input (it may be huge or contain bytes)."""
    if not isinstance(errors, list | tuple):
        return []
    out = []
    for e in errors:
        if isinstance(e, dict):
            out.append(
                {
                    "loc": [str(x) for x in e.get("loc", ())],
                    "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", "")),
                }
            )
    return out


def error_page(request: Request, status: int, message: str) -> Response:
    """An HTML error page in the portal's layout."""
    ctx: WebContext = request.app.state.ctx
    return ctx.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )


def create_app(
    config: Config,
    store_url: str,
    *,
    snapshot_provider: SnapshotProvider | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the web app (API, portal, block pages, log) over the store at ``store_url``.

    Scheduled upkeep (order expiry, subscription refresh, witness retries) is not the
    app's: ``clearwall serve`` runs it beside the gateway (``clearwall.jobs``).
    """
    ctx = build_context(config, store_url, snapshot_provider, metrics_registry)
    if config.ledger.witnesses:
        from clearwall.ledger.witnessing import WitnessMetrics

        ctx.registry.register(WitnessMetrics(ctx.tlog))

    app = FastAPI(
        title="clearwall admin API",
        version="1",
        description=API_DESCRIPTION,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the stock docs page loads scripts from a CDN; the CSP forbids it
        redoc_url=None,
    )
    app.state.ctx = ctx
    _install_error_handlers(app)

    @app.middleware("http")
    async def block_pages(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Answer requests for blocked hosts with their block page, before any route."""
        answer = blockpage.maybe_block(request, ctx, dedicated=False)
        if answer is not None:
            return answer
        return await call_next(request)

    app.add_middleware(SecurityHeadersMiddleware)
    _limit_bodies(app, ctx)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(api_router())
    app.include_router(portal_router())
    console.install(app)  # /console: the operator and authority console
    health.register(ctx.registry, ctx.store, ctx.tlog)  # log size for the ops alerts
    mirror_metrics.register(ctx.registry, ctx.store)  # the registries followed, and refusals
    _mount_ledger(app, ctx)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus exposition of the registry (aggregate counters only)."""
        return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        """Liveness: the store answers (``ok SIZE``); 503 with the reason when it does
        not (a gateway beside this app keeps enforcing the policy it has)."""
        try:
            return PlainTextResponse(f"ok {ctx.store.log_size()}\n")
        except StoreError as exc:
            return PlainTextResponse(f"store unreachable: {exc}\n", status_code=503)

    return app


def _limit_bodies(app: FastAPI, ctx: WebContext) -> None:
    """Bound request bodies per route (``bodylimit``); added last, so it wraps every
    other middleware and sees a body before anything reads it."""
    app.add_middleware(
        BodyLimitMiddleware, authenticate=lambda header: check_authorization(ctx, header)
    )


def _mount_ledger(app: FastAPI, ctx: WebContext) -> None:
    """Serve the ledger's routes (checkpoint, tiles, proofs)."""
    from clearwall.ledger.http import log_router

    app.include_router(log_router(ctx.tlog))
    app.state.name_proof_url = lambda name, code: f"/log/proof/name/{name}?jurisdiction={code}"
    app.state.inclusion_url = lambda index: f"/log/proof/inclusion?index={index}"


def create_blockpage_app(
    config: Config, store_url: str, *, snapshot_provider: SnapshotProvider | None = None
) -> FastAPI:
    """The dedicated block-page listener: every request gets a block page or a 404.

    Point the sinkhole addresses at it (``[web] blockpage_listen``); it serves nothing
    else, so a sinkholed name can never reach the admin API through it.
    """
    ctx = build_context(config, store_url, snapshot_provider, None)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    app.add_middleware(SecurityHeadersMiddleware)
    _limit_bodies(app, ctx)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
    )
    def any_path(request: Request, path: str) -> Response:
        """Block page for the Host, or a page saying it is not blocked."""
        answer = blockpage.maybe_block(request, ctx, dedicated=True)
        assert answer is not None
        return answer

    return app


def static_dir() -> Path:
    """Where the portal's static files live (for packaging checks)."""
    return STATIC_DIR
