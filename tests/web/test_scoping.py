"""Every write endpoint refuses an authority acting outside its jurisdiction: 403, counted,
and nothing changes in the store or on the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import schema
from web.seeding import Seeded, bearer

Request = tuple[str, str, dict[str, Any] | None]

# A public address literal: subscribing resolves nothing and fetches nothing.
PUBLIC_LIST = "https://1.1.1.1/lists/b.txt"
Case = Callable[[Seeded, dict[str, int]], Request]

# One attempt on jurisdiction bb's policy (or on the operator's all-jurisdiction order) per
# write endpoint, made with jurisdiction aa's authority token.
CASES: dict[str, Case] = {
    "create jurisdiction": lambda s, x: (
        "POST",
        "/api/v1/jurisdictions",
        {"code": "cc", "name": "Gammaland"},
    ),
    "create authority in bb": lambda s, x: (
        "POST",
        "/api/v1/authorities",
        {"name": "Fake", "kind": "court", "jurisdiction": "bb"},
    ),
    "create authority in aa": lambda s, x: (
        "POST",
        "/api/v1/authorities",
        {"name": "Self-made", "kind": "court", "jurisdiction": "aa"},
    ),
    "publish order for bb": lambda s, x: (
        "POST",
        "/api/v1/orders",
        {
            "authority": s.authority_b,
            "title": "t",
            "legal_basis": "b",
            "reference": "X-1",
            "category": "regulatory",
            "rules": "evil.example\n",
        },
    ),
    "publish all-jurisdiction order": lambda s, x: (
        "POST",
        "/api/v1/orders",
        {
            "authority": s.authority_a,
            "title": "t",
            "legal_basis": "b",
            "reference": "X-2",
            "category": "court-order",
            "all_jurisdictions": True,
            "rules": "evil.example\n",
        },
    ),
    # Inside its own jurisdiction an authority still acts only as itself: the log names
    # who ordered what.
    "publish order as another authority of aa": lambda s, x: (
        "POST",
        "/api/v1/orders",
        {
            "authority": s.operator_authority,
            "title": "t",
            "legal_basis": "b",
            "reference": "X-5",
            "category": "malware",
            "rules": "evil.example\n",
        },
    ),
    "amend bb order": lambda s, x: (
        "POST",
        f"/api/v1/orders/{s.order_b}/amend",
        {"add": "more.example\n", "reason": "r"},
    ),
    "amend all-jurisdiction order": lambda s, x: (
        "POST",
        f"/api/v1/orders/{s.order_malware}/amend",
        {"remove": "malware.example\n", "reason": "r"},
    ),
    "revoke bb order": lambda s, x: (
        "POST",
        f"/api/v1/orders/{s.order_b}/revoke",
        {"reason": "r"},
    ),
    "revoke all-jurisdiction order": lambda s, x: (
        "POST",
        f"/api/v1/orders/{s.order_malware}/revoke",
        {"reason": "r"},
    ),
    "subscribe bb order": lambda s, x: (
        "POST",
        "/api/v1/subscriptions",
        {"order_id": s.order_b, "source": PUBLIC_LIST},
    ),
    "refresh bb subscription": lambda s, x: (
        "POST",
        f"/api/v1/subscriptions/{x['subscription']}/refresh",
        None,
    ),
    "decide bb appeal": lambda s, x: (
        "POST",
        f"/api/v1/appeals/{x['appeal']}/decide",
        {"outcome": "upheld", "explanation": "e"},
    ),
    # Cross-border requests: aa may ask bb, never decide for bb nor ask in bb's name.
    "file request as bb": lambda s, x: (
        "POST",
        "/api/v1/requests",
        {
            "authority": s.authority_b,
            "to": "aa",
            "category": "phishing",
            "legal_basis": "b",
            "reference": "X-3",
            "names": "evil.example\n",
        },
    ),
    "accept request to bb": lambda s, x: (
        "POST",
        f"/api/v1/requests/{x['request_to_b']}/accept",
        {"authority": s.authority_a, "legal_basis": "b", "reference": "X-4"},
    ),
    "accept request to bb for bb": lambda s, x: (
        "POST",
        f"/api/v1/requests/{x['request_to_b']}/accept",
        {"authority": s.authority_b, "legal_basis": "b", "reference": "X-4"},
    ),
    "refuse request to bb": lambda s, x: (
        "POST",
        f"/api/v1/requests/{x['request_to_b']}/refuse",
        {"reason": "r"},
    ),
    "refuse request to bb for bb": lambda s, x: (
        "POST",
        f"/api/v1/requests/{x['request_to_b']}/refuse",
        {"authority": s.authority_b, "reason": "r"},
    ),
    "withdraw request of bb": lambda s, x: (
        "POST",
        f"/api/v1/requests/{x['request_from_b']}/withdraw",
        {"reason": "r"},
    ),
}

# Which route template each case exercises, so that a new write endpoint without a case
# fails the coverage test below.
COVERS = {
    "create jurisdiction": "/api/v1/jurisdictions",
    "create authority in bb": "/api/v1/authorities",
    "publish order for bb": "/api/v1/orders",
    "amend bb order": "/api/v1/orders/{order_id}/amend",
    "revoke bb order": "/api/v1/orders/{order_id}/revoke",
    "subscribe bb order": "/api/v1/subscriptions",
    "refresh bb subscription": "/api/v1/subscriptions/{subscription_id}/refresh",
    "decide bb appeal": "/api/v1/appeals/{appeal_id}/decide",
    "file request as bb": "/api/v1/requests",
    "accept request to bb": "/api/v1/requests/{request_id}/accept",
    "refuse request to bb": "/api/v1/requests/{request_id}/refuse",
    "withdraw request of bb": "/api/v1/requests/{request_id}/withdraw",
}


def fingerprint(seeded: Seeded) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (tokens aside): equal fingerprints mean nothing changed."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with seeded.store.read() as conn:
        for table in schema.metadata.sorted_tables:
            if table.name == "api_tokens":
                continue
            rows = conn.execute(select(table)).all()
            out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def extras(seeded: Seeded) -> dict[str, int]:
    """Records on jurisdiction bb that some cases need: a subscription, an appeal, and a
    request each way between aa and bb."""
    sub = seeded.service.add_subscription(seeded.order_b, "https://lists.example/b.txt")
    appeal = seeded.service.file_appeal(seeded.order_b, "blocked-b.example", "me@x.example", "why")
    names = [RuleSpec(RuleKind.SUBTREE, "phish.example")]
    to_b = seeded.service.file_request(
        seeded.authority_a, "bb", "block", "phishing", "Act A", "A-R-1", names
    )
    from_b = seeded.service.file_request(
        seeded.authority_b, "aa", "block", "phishing", "Act B", "B-R-1", names
    )
    return {
        "subscription": sub.id,
        "appeal": appeal.id,
        "request_to_b": to_b.id,
        "request_from_b": from_b.id,
    }


def denied_count(app: FastAPI) -> float:
    """Total of the scope-denied counter."""
    return sum(
        s.value
        for m in app.state.ctx.registry.collect()
        if m.name == "clearwall_api_scope_denied"
        for s in m.samples
        if s.name.endswith("_total")
    )


@pytest.mark.parametrize("case", sorted(CASES))
async def test_authority_of_aa_cannot_touch_bb(
    client: httpx.AsyncClient, app: FastAPI, seeded: Seeded, case: str
) -> None:
    more = extras(seeded)
    method, path, body = CASES[case](seeded, more)
    before = fingerprint(seeded)
    size = seeded.store.log_size()
    denied = denied_count(app)
    r = await client.request(method, path, json=body, headers=bearer(seeded.tokens["auth_a"]))
    assert r.status_code == 403, r.text
    assert fingerprint(seeded) == before
    assert seeded.store.log_size() == size
    assert denied_count(app) == denied + 1
    metrics = (await client.get("/metrics")).text
    assert "clearwall_api_scope_denied_total" in metrics


async def test_the_same_writes_work_inside_the_own_jurisdiction(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    """The control: authority bb may do to bb what aa may not (so the 403s are scope)."""
    more = extras(seeded)
    h = bearer(seeded.tokens["auth_b"])
    for case in (
        "amend bb order",
        "decide bb appeal",
        "subscribe bb order",
        "revoke bb order",
        "accept request to bb for bb",
    ):
        method, path, body = CASES[case](seeded, more)
        r = await client.request(method, path, json=body, headers=h)
        assert r.status_code in (200, 201), (case, r.text)


def test_every_write_endpoint_has_a_scoping_case(app: FastAPI) -> None:
    writes = {
        path
        for path, item in app.openapi()["paths"].items()
        if set(item) & {"post", "put", "patch", "delete"}
    }
    assert writes == set(COVERS.values())
