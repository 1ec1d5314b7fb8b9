"""A server-rendered reference of the admin API, generated from its OpenAPI schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.web.portal.render import page

router = APIRouter()

METHODS = ("get", "post", "put", "patch", "delete")


def operations(schema: dict[str, Any]) -> list[dict[str, str]]:
    """Method, path, summary and auth of every operation, in path order."""
    out = []
    for path, item in sorted(schema.get("paths", {}).items()):
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            public = op.get("security") == []
            out.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": (op.get("description") or "").split("\n\n")[0],
                    "auth": "public" if public else "token",
                }
            )
    return out


@router.get("/api")
def api_reference(request: Request) -> Response:
    """The list of API operations, and where the machine-readable schema lives."""
    return page(
        request, "api.html", {"nav": "api", "operations": operations(request.app.openapi())}
    )
