"""Bearer-token authentication, roles, and jurisdiction scope checks for the admin API.

Roles: ``operator`` may do everything; ``authority`` may write only orders (and decide
appeals) of its own authority's jurisdiction; ``auditor`` may read everything, including
non-public fields, and write nothing. Every refused scope is counted in
``clearwall_api_scope_denied_total`` so that an operator sees probing attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from clearwall.policy.model import Authority
from clearwall.store import repositories
from clearwall.store.records import ApiToken, TokenRole

if TYPE_CHECKING:
    from clearwall.web.context import WebContext

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `clearwall tokens create`; sent as `Authorization: Bearer …`.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an API request: its token and, for authority tokens, its authority."""

    token: ApiToken
    authority: Authority | None = None

    @property
    def role(self) -> TokenRole:
        """The token's role."""
        return self.token.role

    @property
    def jurisdiction(self) -> str | None:
        """The only jurisdiction an authority token may act on; None for other roles."""
        return self.authority.jurisdiction if self.authority else None


def scope_counter(registry: CollectorRegistry) -> Counter:
    """The counter of refused scope checks, registered once per registry."""
    existing = getattr(registry, "_names_to_collectors", {}).get("clearwall_api_scope_denied")
    if isinstance(existing, Counter):
        return existing
    return Counter(
        "clearwall_api_scope_denied",
        "API requests refused because a token acted outside its role or jurisdiction.",
        ["reason"],
        registry=registry,
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="clearwall"'})


def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """Resolve the bearer token to a Principal; 401 when missing, unknown or revoked.

    The token itself is never logged or echoed, not even in error messages.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    return principal_of(request.app.state.ctx, credentials.credentials)


def check_authorization(ctx: WebContext, header: str | None) -> Principal:
    """``authenticate`` for a raw ``Authorization`` header value (the body limiter asks
    before it reads a large body); the same 401s."""
    scheme, _, secret = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise _unauthorized("missing bearer token")
    return principal_of(ctx, secret.strip())


def principal_of(ctx: WebContext, secret: str) -> Principal:
    """The Principal of a bearer token's secret; 401 when unknown or revoked."""
    token = ctx.tokens.authenticate(secret)
    if token is None:
        raise _unauthorized("invalid or revoked token")
    return principal_for_token(ctx, token)


def principal_for_token(ctx: WebContext, token: ApiToken) -> Principal:
    """The Principal of an authenticated token (its authority looked up for authority
    tokens); shared by the API's bearer check and the console's sessions."""
    authority = None
    if token.role is TokenRole.AUTHORITY and token.authority_id is not None:
        with ctx.store.read() as conn:
            authority = repositories.get_authority(conn, token.authority_id)
    return Principal(token, authority)


def deny(request: Request, reason: str, detail: str) -> HTTPException:
    """Count a refused scope check and build the 403 to raise."""
    request.app.state.ctx.scope_denied.labels(reason=reason).inc()
    return HTTPException(403, detail)


def require_reader(principal: Principal = Depends(authenticate)) -> Principal:
    """Any valid token may read the admin API."""
    return principal


def require_writer(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    """Operators and authorities may write; auditors are read-only."""
    if principal.role is TokenRole.AUDITOR:
        raise deny(request, "read-only", "auditor tokens are read-only")
    return principal


def require_operator(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
    """Only operators may change jurisdictions, authorities and subscriptions."""
    if principal.role is not TokenRole.OPERATOR:
        raise deny(request, "operator-only", "this endpoint needs an operator token")
    return principal


def check_jurisdiction(request: Request, principal: Principal, jurisdiction: str) -> None:
    """Refuse (403, counted) when an authority token acts on another jurisdiction."""
    if principal.role is TokenRole.OPERATOR:
        return
    if principal.role is not TokenRole.AUTHORITY or principal.jurisdiction != jurisdiction:
        raise deny(
            request,
            "jurisdiction",
            f"this token may not act on jurisdiction {jurisdiction!r}",
        )
