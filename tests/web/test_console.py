"""The console over the app in-process: sessions, CSRF, roles and scope, every page.

The seeded store has two jurisdictions (aa, bb), an authority token for each, an
operator and an auditor token (web/seeding.py). Browser tests are in
test_console_browser.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from clearwall.config import LoggingConfig, load_config
from clearwall.ledger.log import TransparencyLog
from clearwall.querylog import SegmentStore
from clearwall.store.tokens import TokenStore
from clearwall.web.app import create_app
from clearwall.web.queries import order_facts
from web.seeding import BASE_URL, Seeded
from witness.processes import WitnessProcess, clearwall

PAGES = (
    "/console",
    "/console/orders",
    "/console/orders/new",
    "/console/appeals",
    "/console/requests",
    "/console/subscriptions",
    "/console/jurisdictions",
    "/console/authorities",
    "/console/witnesses",
)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
def console_app(seeded_sqlite: Seeded, tmp_path: Path) -> FastAPI:
    """The app with a query log directory holding a few records of both jurisdictions."""
    logging = LoggingConfig(query_log=True, query_log_dir=tmp_path / "ql")
    store = SegmentStore(logging.query_log_dir, "w0", 1 << 30, 86400)
    now = time.time()
    o = seeded_sqlite.order_a
    store.append(
        [
            (
                now - 5,
                "10.1.2.0/24",
                "aa",
                "www.blocked-a.example",
                1,
                "block",
                f",{o},",
                0,
                0.1,
                "udp",
                1,
                0.1,
            ),
            (
                now - 4,
                "10.2.9.0/24",
                "bb",
                "www.blocked-b.example",
                1,
                "block",
                ",2,",
                3,
                0.1,
                "udp",
                1,
                0.1,
            ),
            (
                now - 3,
                "10.1.2.0/24",
                "aa",
                "www.example.org",
                1,
                "allow",
                "",
                0,
                4.2,
                "udp",
                2,
                6.0,
            ),
        ],
        now,
    )
    store.close()
    config = dataclasses.replace(seeded_sqlite.config, logging=logging)
    return create_app(config, seeded_sqlite.url)


@pytest.fixture
async def browser(console_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies, as a browser does."""
    transport = httpx.ASGITransport(app=console_app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


async def sign_in(c: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await c.get("/console")
    return await c.post("/console/sign-in", data={"csrf_token": _csrf(page.text), "token": token})


async def test_sign_in_sets_a_strict_session_cookie_and_never_echoes_the_token(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    page = await browser.get("/console")
    assert 'type="password"' in page.text
    r = await sign_in(browser, seeded_sqlite.tokens["operator"])
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cw_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure (next test)
    for path in PAGES:
        r = await browser.get(path)
        assert r.status_code == 200, path
        assert seeded_sqlite.tokens["operator"] not in r.text
        assert r.headers["cache-control"] == "no-store"


async def test_the_cookie_is_secure_over_tls(console_app: FastAPI, seeded_sqlite: Seeded) -> None:
    transport = httpx.ASGITransport(app=console_app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://portal.test") as c:
        r = await sign_in(c, seeded_sqlite.tokens["operator"])
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cw_session="))
    assert "Secure" in cookie


@pytest.mark.parametrize("token", ["", "cw_nope", "x" * 250])
async def test_a_bad_token_is_refused(browser: httpx.AsyncClient, token: str) -> None:
    r = await sign_in(browser, token)
    assert r.status_code == 401 and "not valid" in r.text
    assert (await browser.get("/console/orders")).status_code == 303


@pytest.mark.parametrize("path", [p for p in PAGES if p != "/console"] + ["/console/queries"])
async def test_signed_out_visitors_go_to_the_sign_in_form(
    browser: httpx.AsyncClient, path: str
) -> None:
    r = await browser.get(path)
    assert r.status_code == 303 and r.headers["location"] == "/console"


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/console/sign-in", {"token": "x"}),
        ("/console/orders/1/revoke", {"reason": "x"}),
        ("/console/appeals/1/decide", {"outcome": "upheld", "explanation": "x"}),
        ("/console/requests/1/refuse", {"authority": "2", "reason": "x"}),
        ("/console/tokens", {"role": "operator"}),
    ],
)
async def test_every_form_needs_its_csrf_token(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded, path: str, data: dict[str, str]
) -> None:
    await sign_in(browser, seeded_sqlite.tokens["operator"])
    r = await browser.post(path, data={**data, "csrf_token": "0" * 64})
    assert r.status_code == 403
    assert seeded_sqlite.reader.order(1).status.value == "active"


async def test_sign_out_and_revocation_end_the_session(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    await sign_in(browser, seeded_sqlite.tokens["auth_a"])
    page = await browser.get("/console")
    assert "Alphaland High Court" in page.text
    r = await browser.post("/console/sign-out", data={"csrf_token": _csrf(page.text)})
    assert r.status_code == 303
    assert (await browser.get("/console/orders")).status_code == 303
    await sign_in(browser, seeded_sqlite.tokens["auth_a"])
    assert (await browser.get("/console/orders")).status_code == 200
    store = TokenStore(seeded_sqlite.store)
    token_id = next(t.id for t in store.list() if t.label == "court")
    store.revoke(token_id)
    assert (await browser.get("/console/orders")).status_code == 303


async def test_an_authority_sees_and_acts_only_in_its_jurisdiction(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    s = seeded_sqlite
    await sign_in(browser, s.tokens["auth_a"])
    orders = (await browser.get("/console/orders")).text
    assert f"/console/orders/{s.order_a}" in orders
    assert f"/console/orders/{s.order_b}" not in orders
    assert (await browser.get(f"/console/orders/{s.order_b}")).status_code == 403
    page = await browser.get(f"/console/orders/{s.order_a}")
    r = await browser.post(
        f"/console/orders/{s.order_b}/revoke",
        data={"csrf_token": _csrf(page.text), "reason": "not mine"},
    )
    assert r.status_code == 403
    assert s.reader.order(s.order_b).status.value == "active"
    queries = (await browser.get("/console/queries?hours=")).text
    assert "www.blocked-a.example" in queries and "www.blocked-b.example" not in queries
    assert (await browser.get("/console/queries/export")).status_code == 403
    assert (await browser.get("/console/tokens")).status_code == 403
    juris = (await browser.get("/console/jurisdictions")).text
    assert "Alphaland" in juris and "Betaland" not in juris and "Add a jurisdiction" not in juris


async def test_an_auditor_reads_policy_but_not_the_query_log(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    await sign_in(browser, seeded_sqlite.tokens["auditor"])
    assert (await browser.get("/console/orders")).status_code == 200
    assert (await browser.get("/console/queries")).status_code == 403
    page = await browser.get(f"/console/orders/{seeded_sqlite.order_a}")
    assert "Revoke the order" not in page.text


async def test_preview_then_publish(browser: httpx.AsyncClient, seeded_sqlite: Seeded) -> None:
    s = seeded_sqlite
    await sign_in(browser, s.tokens["auth_a"])
    page = await browser.get("/console/orders/new")
    fields = {
        "csrf_token": _csrf(page.text),
        "authority": str(s.authority_a),
        "title": "Pirate mirrors",
        "legal_basis": "Copyright Act s. 97A",
        "reference": "HC-2025-0099",
        "category": "court-order",
        "action": "nxdomain",
        "format": "hosts",
    }
    listing = (
        b"# mirrors\n0.0.0.0 mirror-one.example\nnot a hosts line\n0.0.0.0 x.blocked-a.example\n"
    )
    r = await browser.post(
        "/console/orders/preview", data=fields, files={"upload": ("list.txt", listing)}
    )
    assert r.status_code == 200, r.text
    assert re.search(r'id="parsed-count">2<', r.text)
    assert re.search(r"<td>3</td><td>[^<]+</td>", r.text), "line 3 is not listed as rejected"
    assert "x.blocked-a.example" in r.text and f"#{s.order_a}" in r.text  # already covered
    assert "Alphaland (AA)" in r.text
    published = {**fields, "csrf_token": _csrf(r.text)}
    published["rules"] = re.search(r'name="rules"[^>]*>([^<]*)<', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.post("/console/orders/publish", data=published)
    assert r.status_code == 303
    oid = int(r.headers["location"].split("/")[-1].split("?")[0])
    order = s.reader.order(oid)
    assert order.title == "Pirate mirrors"
    assert {rule.value for rule in s.reader.order_rules(oid)} == {
        "mirror-one.example",
        "x.blocked-a.example",
    }


async def test_an_authority_cannot_publish_for_everyone(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    s = seeded_sqlite
    await sign_in(browser, s.tokens["auth_a"])
    page = await browser.get("/console/orders/new")
    r = await browser.post(
        "/console/orders/publish",
        data={
            "csrf_token": _csrf(page.text),
            "authority": str(s.authority_a),
            "title": "t",
            "legal_basis": "b",
            "reference": "r",
            "category": "malware",
            "all_jurisdictions": "1",
            "rules": "evil.example\n",
        },
    )
    assert r.status_code == 403
    assert [f.order.title for f in order_facts(s.store) if f.order.title == "t"] == []


async def test_operator_exports_json_lines(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    await sign_in(browser, seeded_sqlite.tokens["operator"])
    r = await browser.get("/console/queries/export?decision=block")
    assert r.status_code == 200
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert [x["qname"] for x in lines] == ["www.blocked-a.example", "www.blocked-b.example"]
    assert lines[0]["client"] == "10.1.2.0/24" and lines[0]["qtype"] == "A"
    page = (await browser.get("/console/queries?hours=24")).text
    assert "Top blocked names per order" in page and "www.example.org" in page


async def test_operator_creates_a_token_shown_once(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    await sign_in(browser, seeded_sqlite.tokens["operator"])
    page = await browser.get("/console/tokens")
    r = await browser.post(
        "/console/tokens",
        data={"csrf_token": _csrf(page.text), "role": "auditor", "label": "press"},
    )
    assert r.status_code == 201
    secret = re.search(r'value="(cw_[^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    assert secret not in (await browser.get("/console/tokens")).text


async def test_an_authority_amends_its_order(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    s = seeded_sqlite
    await sign_in(browser, s.tokens["auth_a"])
    page = await browser.get(f"/console/orders/{s.order_a}")
    r = await browser.post(
        f"/console/orders/{s.order_a}/amend",
        data={
            "csrf_token": _csrf(page.text),
            "add": "new-mirror.example\n",
            "remove": "also-a.example\n",
            "format": "domains",
            "reason": "Second list from the claimant",
        },
    )
    assert r.status_code == 303 and "Order+amended" in r.headers["location"]
    assert {rule.value for rule in s.reader.order_rules(s.order_a)} == {
        "blocked-a.example",
        "new-mirror.example",
    }
    page = await browser.get(f"/console/orders/{s.order_a}")
    assert "order-amended" in page.text and "Second list from the claimant" in page.text
    r = await browser.post(
        f"/console/orders/{s.order_a}/amend",
        data={"csrf_token": _csrf(page.text), "add": "x.example", "reason": ""},
    )
    assert "Not+done" in r.headers["location"]  # a reason is required (the API's rule)


def _witness_row(html: str, name: str) -> str:
    """The table row of witness ``name`` on the witnesses page."""
    found = re.search(rf"<tr><td class=\"mono\">{re.escape(name)}</td>.*?</tr>", html)
    assert found, f"no row for {name}"
    return found.group(0)


async def test_the_witnesses_page_shows_what_the_jobs_process_did(
    seeded_sqlite: Seeded, tmp_path: Path
) -> None:
    """Lagging witnesses are retried by the jobs (``clearwall.jobs``, a process of
    ``serve`` or ``clearwall jobs run``), not by the web app: the page reads the state
    they leave beside the published tiles."""
    s = seeded_sqlite
    ledger = s.config.ledger
    vkey = TransparencyLog(s.store, ledger).verifier.vkey
    up, late = (WitnessProcess(tmp_path / f"w{i}", f"w{i}.example/witness") for i in (1, 2))
    try:
        table = ", ".join(f'{{ url = "{w.url}", vkey = "{w.vkey}" }}' for w in (up, late))
        for w in (up, late):
            w.add_log(ledger.origin, vkey)
        up.start()
        config_file = tmp_path / "clearwall.toml"
        config_file.write_text(
            f'[ledger]\nkey_file = "{ledger.key_file}"\ntiles_dir = "{ledger.tiles_dir}"\n'
            f'origin = "{ledger.origin}"\nwitnesses = [{table}]\nwitness_quorum = 1\n'
            "witness_timeout = 3.0\n"
        )
        config = dataclasses.replace(s.config, ledger=load_config(config_file).ledger)
        jobs = ("jobs", "run", "witnesses", "--db", s.url, "--config", str(config_file))
        transport = httpx.ASGITransport(app=create_app(config, s.url))
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as browser:
            await sign_in(browser, s.tokens["operator"])
            page = (await browser.get("/console/witnesses")).text
            assert "not witnessed" in page  # seeded before any witness was configured
            assert 'badge ok">yes' not in page

            assert "1 late cosignature(s)" in clearwall(*jobs, cwd=tmp_path).stdout
            page = (await browser.get("/console/witnesses")).text
            assert 'badge ok">witnessed' in page
            assert 'badge ok">yes' in _witness_row(page, "w1.example/witness")
            lagging = _witness_row(page, "w2.example/witness")
            assert 'badge open">no' in lagging and "Connect" in lagging
            assert "(1 failures)" in lagging

            late.start()
            assert "1 late cosignature(s)" in clearwall(*jobs, cwd=tmp_path).stdout
            page = (await browser.get("/console/witnesses")).text
            row = _witness_row(page, "w2.example/witness")
            assert 'badge ok">yes' in row and "Connect" not in row
    finally:
        up.stop()
        late.stop()
