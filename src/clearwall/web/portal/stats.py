"""The statistics page: charts of orders and rules over time and by category, jurisdiction,
authority, and blocked queries by category."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.web import charts
from clearwall.web.context import WebContext
from clearwall.web.portal.render import page
from clearwall.web.portal.requests import RequestMatrix

router = APIRouter()


@router.get("/stats")
def stats(request: Request) -> Response:
    """Charts a person would rather look at than read, rendered as inline SVG."""
    ctx: WebContext = request.app.state.ctx
    s = ctx.stats.get(ctx.registry if ctx.gateway_metrics else None)
    over_time = [
        charts.Series(
            "all jurisdictions" if code == "*" else code.upper(), charts.cumulative(points)
        )
        for code, points in sorted(s.orders_over_time.items())
    ]
    rendered = {
        "orders_over_time": charts.line_chart(over_time, "Orders in force over time"),
        "rules_over_time": charts.line_chart(
            [charts.Series("rules", charts.cumulative(s.rules_over_time))],
            "Rules in force over time",
        ),
        "by_category": charts.bar_chart(list(s.orders_by_category.items()), "Orders by category"),
        "rules_by_category": charts.bar_chart(
            list(s.rules_by_category.items()), "Rules by category"
        ),
        "by_jurisdiction": charts.bar_chart(
            [("all" if k == "*" else k.upper(), v) for k, v in s.orders_by_jurisdiction.items()],
            "Orders by jurisdiction",
        ),
        "by_authority": charts.bar_chart(
            list(s.orders_by_authority.items()), "Orders by authority"
        ),
        "blocked": charts.bar_chart(list(s.blocked_queries.items()), "Blocked queries by category"),
    }
    return page(
        request,
        "stats.html",
        {
            "nav": "stats",
            "stats": s,
            "charts": rendered,
            "blocked_total": sum(s.blocked_queries.values()),
            "gateway": ctx.gateway_metrics,
            "matrix": RequestMatrix.of(ctx.reader.requests()),
        },
    )
