"""The public portal, block pages and web hardening, through HTTP on a real store."""

from __future__ import annotations

import re
from xml.etree import ElementTree as ET

import httpx
import pytest

from clearwall.web.security import SubmissionLimiter
from web.seeding import BASE_URL, Seeded, bearer


@pytest.fixture
def seeded(seeded_sqlite: Seeded) -> Seeded:
    """The portal reads through the same service as the API: SQLite is enough here."""
    return seeded_sqlite


PAGES = [
    "/",
    "/search?name=blocked-a.example",
    "/orders",
    "/orders?state=active",
    "/orders/1",
    "/orders/1/appeal",
    "/jurisdictions",
    "/jurisdictions/aa",
    "/authorities/1",
    "/stats",
    "/log",
    "/appeals",
    "/api",
    "/requests",
    "/jurisdictions/aa/requests",
]


@pytest.mark.parametrize("path", PAGES)
async def test_pages_render_with_security_headers(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    # nothing is loaded from another origin, and there is no inline script or style
    assert not re.search(r'(src|href)="(https?:)?//(?!portal\.test|court\.aa\.example)', r.text)
    assert "<script>" not in r.text and " style=" not in r.text


async def test_search_says_where_by_whom_and_since_when(client: httpx.AsyncClient) -> None:
    r = await client.get("/search", params={"name": "WWW.Blocked-A.Example."})
    text = r.text
    assert "Blocked in 1 of 2 jurisdictions" in text
    assert "Alphaland High Court" in text and "Copyright Act s. 97A" in text
    assert "HC-2025-0042" in text and "15 January 2025" in text
    assert "/orders/1/appeal?name=www.blocked-a.example" in text
    r = await client.get("/search", params={"name": "fine.example"})
    assert "Not blocked on this network" in r.text


async def test_search_covers_all_jurisdiction_orders(client: httpx.AsyncClient) -> None:
    r = await client.get("/search", params={"name": "x.malware.example"})
    assert "Blocked in 3 of 3 jurisdictions" in r.text
    assert "Any other network" in r.text


async def test_invalid_search_is_explained_not_crashed(client: httpx.AsyncClient) -> None:
    r = await client.get("/search", params={"name": "<script>alert(1)</script>"})
    assert r.status_code == 400
    assert "not a valid domain name" in r.text
    assert "<script>alert(1)" not in r.text and "&lt;script&gt;" in r.text


async def test_output_is_escaped(client: httpx.AsyncClient, seeded: Seeded) -> None:
    evil = seeded.service.add_authority(
        '<img src=x onerror="alert(1)">', "court", "aa", ["https://ok.example"]
    )
    order = seeded.service.add_order(
        evil.id,
        "<script>alert(2)</script>",
        "basis",
        "R-X",
        "court-order",
        "nxdomain",
        [],
        document_url="javascript:alert(3)",
    )
    page = (await client.get(f"/orders/{order.id}")).text
    assert "<script>alert(2)" not in page and "<img src=x" not in page
    assert 'href="javascript:' not in page


async def test_order_page_and_rule_file(client: httpx.AsyncClient, seeded: Seeded) -> None:
    page = (await client.get(f"/orders/{seeded.order_a}")).text
    for fact in ("Copyright Act s. 97A", "HC-2025-0042", "court-order", "SINKHOLE", "2 rules"):
        assert fact in page.replace("<b>", "").replace("</b>", "")
    assert "https://court.aa.example/orders/0042.pdf" in page
    assert "Published as entry" in page
    r = await client.get(f"/orders/{seeded.order_a}/rules.txt")
    assert r.text == "exact also-a.example\nsubtree blocked-a.example\n"
    assert (await client.get("/orders/999")).status_code == 404


async def test_feed_is_atom_with_every_order(client: httpx.AsyncClient, seeded: Seeded) -> None:
    seeded.service.revoke_order(seeded.order_b, "licence granted")
    r = await client.get("/feed.atom")
    assert r.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(r.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert titles[0] == "Order #2 revoked"
    assert any(t and t.startswith("Order #1 published") for t in titles)


async def test_log_page_shows_key_and_verify_command(client: httpx.AsyncClient) -> None:
    page = (await client.get("/log")).text
    assert "portal.test/log+" in page  # the vkey
    assert "clearwall ledger verify" in page
    assert "order-published" in page
    # Jurisdictions are policy too: their entries link the jurisdiction and its networks.
    assert "jurisdiction-set" in page and 'href="/jurisdictions/aa"' in page
    assert "Alphaland (networks: 10.1.0.0/16)" in page


async def _csrf(client: httpx.AsyncClient, order: int) -> str:
    form = (await client.get(f"/orders/{order}/appeal?name=blocked-a.example")).text
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
    assert match
    return match.group(1)


async def test_appeal_filing_is_logged_and_shown(client: httpx.AsyncClient, seeded: Seeded) -> None:
    token = await _csrf(client, seeded.order_a)
    size = seeded.store.log_size()
    r = await client.post(
        f"/orders/{seeded.order_a}/appeal",
        data={
            "csrf_token": token,
            "name": "blocked-a.example",
            "contact": "owner@a.example",
            "reason": "My site is a public-domain film archive.",
        },
    )
    assert r.status_code == 303
    assert seeded.store.log_size() == size + 1
    status = await client.get(r.headers["location"])
    assert "was filed and published as log entry" in status.text
    assert "public-domain film archive" in status.text
    assert "owner@a.example" not in status.text  # the contact is never published
    assert "open" in (await client.get("/appeals")).text


async def test_appeal_without_valid_csrf_token_is_refused(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    await _csrf(client, seeded.order_a)  # the cookie is set, but the token is forged
    size = seeded.store.log_size()
    data = {"csrf_token": "0" * 64, "name": "blocked-a.example", "contact": "c", "reason": "r"}
    r = await client.post(f"/orders/{seeded.order_a}/appeal", data=data)
    assert r.status_code == 403
    fresh = httpx.AsyncClient(transport=client._transport, base_url=BASE_URL)  # no cookie
    r = await fresh.post(f"/orders/{seeded.order_a}/appeal", data=data)
    assert r.status_code == 403
    assert seeded.store.log_size() == size


async def test_appeal_filing_is_rate_limited(client: httpx.AsyncClient, seeded: Seeded) -> None:
    client._transport.app.state.ctx.appeal_limiter = SubmissionLimiter(burst=2, per_hour=1)  # type: ignore[attr-defined]
    token = await _csrf(client, seeded.order_a)
    data = {"csrf_token": token, "name": "blocked-a.example", "contact": "c@x", "reason": "r"}
    codes = [
        (await client.post(f"/orders/{seeded.order_a}/appeal", data=data)).status_code
        for _ in range(3)
    ]
    assert codes == [303, 303, 429]


async def test_invalid_appeal_is_explained(client: httpx.AsyncClient, seeded: Seeded) -> None:
    token = await _csrf(client, seeded.order_a)
    data = {"csrf_token": token, "name": "not a name", "contact": "", "reason": ""}
    r = await client.post(f"/orders/{seeded.order_a}/appeal", data=data)
    assert r.status_code == 400
    assert "not valid" in r.text and "reach you" in r.text and "reason" in r.text


async def test_block_page_for_court_order_is_451_with_link(client: httpx.AsyncClient) -> None:
    r = await client.get("/some/page?x=1", headers={"host": "www.blocked-a.example"})
    assert r.status_code == 451
    assert r.headers["link"] == f'<{BASE_URL}/orders/1>; rel="blocked-by"'
    for fact in ("Alphaland High Court", "Copyright Act s. 97A", "HC-2025-0042", "15 January 2025"):
        assert fact in r.text
    assert "File an appeal" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.headers["cache-control"] == "no-store"


async def test_block_page_depends_on_the_clients_jurisdiction(app: object) -> None:
    transport = httpx.ASGITransport(app=app, client=("10.2.9.9", 5555))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        r = await c.get("/", headers={"host": "blocked-a.example"})
        assert r.status_code == 200  # not blocked in bb: the portal answers
        r = await c.get("/", headers={"host": "blocked-b.example"})
        assert r.status_code == 451
        assert "Betaland Media Regulator" in r.text


async def test_security_block_is_explanatory_403(client: httpx.AsyncClient) -> None:
    r = await client.get("/", headers={"host": "cdn.malware.example"})
    assert r.status_code == 403
    assert "malware" in r.text and "Test Net" in r.text
    assert r.headers["link"].endswith('; rel="blocked-by"')


async def test_portal_host_and_ip_hosts_are_never_block_pages(client: httpx.AsyncClient) -> None:
    assert (await client.get("/", headers={"host": "127.0.0.1:8080"})).status_code == 200
    assert (await client.get("/", headers={"host": "portal.test"})).status_code == 200


async def test_dedicated_block_page_listener(seeded: Seeded) -> None:
    from clearwall.web.app import create_blockpage_app

    app = create_blockpage_app(seeded.config, seeded.url)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://blocked-a.example") as c:
        r = await c.post("/login")
        assert r.status_code == 451
        assert (await c.get("/static/style.css")).status_code == 200
        r = await c.get("/api/v1/orders", headers={"host": "fine.example"})
        assert r.status_code == 404
        assert "not blocked" in r.text


async def test_stats_show_the_gateways_blocked_query_counts(seeded: Seeded) -> None:
    from prometheus_client import CollectorRegistry, Counter

    from clearwall.web.app import create_app

    registry = CollectorRegistry()
    blocks = Counter(
        "clearwall_dns_blocks", "Block answers", ["order", "category"], registry=registry
    )
    blocks.labels(order="1", category="court-order").inc(7)
    blocks.labels(order="3", category="malware").inc(5)
    blocks.labels(order="4", category="malware").inc(1)
    app = create_app(seeded.config, seeded.url, metrics_registry=registry)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        page = (await c.get("/stats")).text
        assert "court-order: 7" in page and "malware: 6" in page
        s = (await c.get("/api/v1/stats", headers=bearer(seeded.tokens["auditor"]))).json()
        assert s["blocked_queries_by_category"] == [
            {"key": "court-order", "count": 7},
            {"key": "malware", "count": 6},
        ]
        assert "clearwall_api_scope_denied" in (await c.get("/metrics")).text


async def test_search_names_the_exception_that_allows_a_name(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec

    seeded.service.add_order(
        seeded.authority_a,
        "Exception for the court's own help page",
        "Copyright Act s. 97A(4)",
        "HC-2025-0043",
        "court-order",
        "nxdomain",
        [RuleSpec(RuleKind.ALLOW_EXACT, "help.blocked-a.example")],
        effective_from="2025-01-16",
    )
    page = (await client.get("/search", params={"name": "help.blocked-a.example"})).text
    assert "Not blocked on this network" in page
    assert "allowed by an explicit exception" in page and "HC-2025-0043" not in page
    assert "Exception for the court" in page and "allow-exact help.blocked-a.example" in page


async def test_block_page_speaks_the_visitors_language(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/", headers={"host": "blocked-a.example", "accept-language": "fr-CH, fr;q=0.9, en;q=0.8"}
    )
    assert r.status_code == 451
    assert r.headers["content-language"] == "fr"
    assert '<html lang="fr">' in r.text
    assert "est bloqué sur décision de Alphaland High Court" in r.text
    r = await client.get("/", headers={"host": "blocked-a.example", "accept-language": "de"})
    assert r.headers["content-language"] == "en"  # no German catalog: the default


def test_every_catalog_has_only_known_keys() -> None:
    from clearwall.web.i18n import CATALOGS, ENGLISH, negotiate

    for language, catalog in CATALOGS.items():
        assert set(catalog) <= set(ENGLISH), language
    assert negotiate("fr;q=0.1, en;q=0.5") == "en"
    assert negotiate("xx, *;q=0.1", "fr") == "fr"
