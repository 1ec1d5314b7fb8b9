"""The home page and the name search: is it blocked, where, by whom, since when."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from clearwall.errors import InvalidName
from clearwall.model import RuleKind
from clearwall.store import schema
from clearwall.web.context import WebContext
from clearwall.web.portal.render import page
from clearwall.web.queries import lookup, order_facts

router = APIRouter()

EXAMPLES = 4

ACTION_TEXT = {
    "sinkhole": "a block page explaining the order (sinkhole address)",
    "nxdomain": "the answer “no such domain” (NXDOMAIN) with an explanation in the DNS reply",
    "nodata": "an empty answer (NODATA) with an explanation in the DNS reply",
    "refused": "a refusal (REFUSED) with an explanation in the DNS reply",
}


def example_names(ctx: WebContext) -> list[str]:
    """One blocked name per order in force, legal orders first, so a visitor can try one."""
    facts = [f for f in order_facts(ctx.store) if f.state() == "active"]
    facts.sort(key=lambda f: (f.order.all_jurisdictions, -f.order.id))
    r = schema.rules
    names: list[str] = []
    with ctx.store.read() as conn:
        for f in facts[:EXAMPLES]:
            name = conn.execute(
                select(r.c.value)
                .where(r.c.order_id == f.order.id)
                .where(r.c.kind.in_((RuleKind.SUBTREE.value, RuleKind.EXACT.value)))
                .order_by(func.length(r.c.value), r.c.value)
                .limit(1)
            ).scalar()
            if name:
                names.append(str(name))
    return names


def name_verify_command(ctx: WebContext, name: str, code: str) -> str:
    """The command that checks this answer against the signed log, offline."""
    from clearwall.web.portal.logpage import verifier_key

    vkey = verifier_key(ctx) or "<verifier key>"
    return (
        f"curl -s '{ctx.base_url}/log/proof/name/{name}?jurisdiction={code}' "
        f"| clearwall ledger verify-proof - --key '{vkey}' --log {ctx.base_url}/log"
    )


@router.get("/")
def home(request: Request) -> Response:
    """The search box, what the portal is, the headline numbers and the latest orders."""
    ctx: WebContext = request.app.state.ctx
    return page(
        request,
        "home.html",
        {
            "nav": "search",
            "examples": example_names(ctx),
            "stats": ctx.stats.get(None),
            "jurisdictions": ctx.reader.jurisdictions(),
            "recent": order_facts(ctx.store)[:8],
        },
    )


@router.get("/search")
def search(request: Request, name: str = Query("", max_length=300)) -> Response:
    """Per-jurisdiction verdicts for one name, with the orders behind each block."""
    ctx: WebContext = request.app.state.ctx
    values: dict[str, object] = {"nav": "search", "query": name}
    if not name.strip():
        values["error"] = "Type a domain name, for example example.com."
        return page(request, "search.html", values, 400)
    try:
        result = lookup(ctx.store, ctx.snapshot(), ctx.reader.jurisdictions(), name)
    except InvalidName as exc:
        values["error"] = f"That is not a valid domain name: {exc}"
        return page(request, "search.html", values, 400)
    values["result"] = result
    values["action_text"] = ACTION_TEXT
    values["query"] = result.unicode
    proof = getattr(request.app.state, "name_proof_url", None)
    values["proof_urls"] = {
        v.code: proof(result.name, "" if v.code == "*" else v.code) if proof else ""
        for v in result.verdicts
    }
    values["verify_command"] = name_verify_command(
        ctx, result.name, result.verdicts[0].code if result.verdicts else ""
    )
    return page(request, "search.html", values)
