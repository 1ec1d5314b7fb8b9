"""Rendering helpers for portal pages: the template response and the Jinja filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from clearwall.web.context import WebContext

SAFE_SCHEMES = ("https://", "http://", "mailto:", "tel:")


def page(request: Request, name: str, values: dict[str, Any], status: int = 200) -> Response:
    """Render a portal template with the common values (``now``, ``nav``)."""
    ctx: WebContext = request.app.state.ctx
    values.setdefault("now", dt.datetime.now(dt.UTC))
    values.setdefault("nav", "")
    return ctx.templates.TemplateResponse(request, name, values, status_code=status)


def day(value: dt.date | dt.datetime | str | None) -> str:
    """A date for people: ``12 March 2025`` (UTC)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        text = value
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    return f"{value.day} {value:%B %Y}"


def when(value: dt.datetime | None) -> str:
    """A timestamp for people: ``12 March 2025, 14:03 UTC``."""
    if value is None:
        return ""
    return f"{day(value)}, {value.astimezone(dt.UTC):%H:%M} UTC"


def safe_url(value: str | None) -> str:
    """The URL if its scheme is harmless to link to (no ``javascript:``), else ''."""
    text = (value or "").strip()
    return text if text.lower().startswith(SAFE_SCHEMES) else ""


def install_filters(env: Any) -> None:
    """Register the portal's Jinja filters on a template environment."""
    env.filters["day"] = day
    env.filters["when"] = when
    env.filters["safe_url"] = safe_url
