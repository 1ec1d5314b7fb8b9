"""An order's expiry on the portal: the state its dates give, and the log entry the expiry
job writes (which only the job writes: the dates alone already say "expired")."""

from __future__ import annotations

import datetime as dt

import httpx

from clearwall.jobs.runner import Jobs, expire
from clearwall.ledger import entries
from clearwall.ledger.entries import OrderExpired
from clearwall.model import Action, Category, OrderStatus, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.web.app import create_app
from web.seeding import BASE_URL, Seeded


async def _order_page(seeded: Seeded, order_id: int) -> str:
    app = create_app(seeded.config, seeded.url)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        page = await client.get(f"/orders/{order_id}")
    assert page.status_code == 200
    return page.text


async def test_the_portal_shows_the_expiry_the_job_logged(seeded: Seeded) -> None:
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
    before = await _order_page(seeded, sunset.id)
    assert "expired" in before.lower()  # its dates say so before anything is logged
    assert OrderExpired.TYPE not in before

    size = seeded.store.log_size()
    jobs = Jobs.open(seeded.config, seeded.url)
    assert expire(jobs) == f"expired 1 order(s): {sunset.id}"
    assert expire(jobs) == "expired 0 order(s)"  # a second run finds nothing more to do

    new = [entries.parse(e.data) for e in seeded.store.log_entries(size)]
    assert [(type(e), e.order_id) for e in new] == [(OrderExpired, sunset.id)]
    assert seeded.reader.order(sunset.id).status is OrderStatus.EXPIRED
    assert seeded.reader.order(seeded.order_a).status is OrderStatus.ACTIVE
    after = await _order_page(seeded, sunset.id)
    assert f"#{size} {OrderExpired.TYPE}" in after  # the log's own entry, in its history


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
    app = create_app(seeded.config, seeded.url)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        page = await client.get("/search", params={"name": "smuggled.example"})
    assert page.status_code == 200
    assert "Blocked in" not in page.text
