"""Jurisdictions: read by any token, created by operators."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from clearwall.web.api.schemas import JurisdictionIn, JurisdictionOut
from clearwall.web.auth import Principal, require_operator, require_reader
from clearwall.web.context import WebContext, get_ctx

router = APIRouter(tags=["jurisdictions"])


@router.get("/jurisdictions", response_model=list[JurisdictionOut])
def list_jurisdictions(
    ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)
) -> list[JurisdictionOut]:
    """Every jurisdiction with its client networks."""
    return [JurisdictionOut.of(j) for j in ctx.reader.jurisdictions()]


@router.get("/jurisdictions/{code}", response_model=JurisdictionOut)
def get_jurisdiction(
    code: str, ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)
) -> JurisdictionOut:
    """One jurisdiction."""
    return JurisdictionOut.of(ctx.reader.jurisdiction(code))


@router.post("/jurisdictions", response_model=JurisdictionOut, status_code=201)
def create_jurisdiction(
    body: JurisdictionIn,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_operator),
) -> JurisdictionOut:
    """Create a jurisdiction (operators only: authorities never redraw borders)."""
    return JurisdictionOut.of(ctx.service.add_jurisdiction(body.code, body.name, body.networks))
