"""Scheduled upkeep: an order past its sunset is marked expired and the expiry is logged."""

from __future__ import annotations

import datetime as dt
import json

import httpx

from clearwall.model import Action, Category, OrderStatus, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.web.app import build_context, create_app, maintenance_pass
from web.seeding import BASE_URL, Seeded


async def test_maintenance_logs_expiry_and_the_portal_shows_it(seeded: Seeded) -> None:
    sunset = seeded.service.add_order(
        seeded.authority_a,
        "Temporary order on a streaming mirror",
        "Copyright Act s. 97A",
        "HC-2025-0099",
        Category.COURT_ORDER,
        Action.NXDOMAIN,
        [RuleSpec(RuleKind.SUBTREE, "mirror-a.example")],
        effective_from=dt.datetime(2025, 2, 1, tzinfo=dt.UTC),
        expires=dt.datetime(2025, 8, 1, tzinfo=dt.UTC),
    )
    before = seeded.store.log_size()
    ctx = build_context(seeded.config, seeded.url, None, None)

    maintenance_pass(ctx)
    maintenance_pass(ctx)  # a second pass finds nothing more to do

    assert seeded.reader.order(sunset.id).status is OrderStatus.EXPIRED
    new = [json.loads(e.data) for e in seeded.store.log_entries()[before:]]
    assert [(e["type"], e["order"]) for e in new] == [("order-expired", sunset.id)]
    assert seeded.reader.order(seeded.order_a).status is OrderStatus.ACTIVE

    app = create_app(seeded.config, seeded.url, maintenance=False)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        page = await client.get(f"/orders/{sunset.id}")
    assert page.status_code == 200
    assert "expired" in page.text.lower()


async def test_portal_never_shows_a_rule_added_behind_the_logs_back(seeded: Seeded) -> None:
    """The portal compiles with the gateway's loader: unlogged rules are not enforced."""
    from sqlalchemy import insert

    from clearwall.store import schema

    with seeded.store.write() as conn:
        conn.execute(
            insert(schema.rules).values(
                order_id=seeded.order_a, kind="exact", value="smuggled.example", action=None
            )
        )
    app = create_app(seeded.config, seeded.url, maintenance=False)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        page = await client.get("/search", params={"name": "smuggled.example"})
    assert page.status_code == 200
    assert "Blocked in" not in page.text
