"""Authorities: read by any token, created by operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from clearwall.web.api.schemas import AuthorityIn, AuthorityOut, PathId
from clearwall.web.auth import Principal, require_operator, require_reader
from clearwall.web.context import WebContext, get_ctx

router = APIRouter(tags=["authorities"])


@router.get("/authorities", response_model=list[AuthorityOut])
def list_authorities(
    jurisdiction: str | None = None,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_reader),
) -> list[AuthorityOut]:
    """Authorities, optionally those of one jurisdiction."""
    return [AuthorityOut.of(a) for a in ctx.reader.authorities(jurisdiction)]


@router.get("/authorities/{authority_id}", response_model=AuthorityOut)
def get_authority(
    authority_id: PathId, ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)
) -> AuthorityOut:
    """One authority."""
    return AuthorityOut.of(ctx.reader.authority(authority_id))


@router.post("/authorities", response_model=AuthorityOut, status_code=201)
def create_authority(
    body: AuthorityIn,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_operator),
) -> AuthorityOut:
    """Create an authority bound to one jurisdiction (operators only)."""
    return AuthorityOut.of(
        ctx.service.add_authority(body.name, body.kind, body.jurisdiction, body.contacts)
    )
