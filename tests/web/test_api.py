"""The admin API through HTTP against the app on a real SQLite and PostgreSQL store."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from clearwall.model import AuthorityKind
from clearwall.store.tokens import TokenStore
from web.seeding import BASE_URL, Seeded, bearer

HOSTS_LIST = """\
# a hosts-format list
0.0.0.0 pirate-one.example
0.0.0.0 pirate-two.example
this line is not a rule at all
"""


async def test_requests_without_a_valid_token_are_401(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    assert (await client.get("/api/v1/orders")).status_code == 401
    r = await client.get("/api/v1/orders", headers=bearer("cw_not-a-real-token"))
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "cw_not-a-real-token" not in r.text
    TokenStore(seeded.store).revoke(1)  # the operator token
    r = await client.get("/api/v1/orders", headers=bearer(seeded.tokens["operator"]))
    assert r.status_code == 401


@pytest.mark.parametrize("role", ["operator", "auditor", "auth_a", "auth_b"])
async def test_every_role_can_read(client: httpx.AsyncClient, seeded: Seeded, role: str) -> None:
    h = bearer(seeded.tokens[role])
    orders = (await client.get("/api/v1/orders", headers=h)).json()
    assert {o["id"] for o in orders} == {seeded.order_a, seeded.order_b, seeded.order_malware}
    one = (await client.get(f"/api/v1/orders/{seeded.order_a}", headers=h)).json()
    assert one["authority"]["name"] == "Alphaland High Court"
    assert one["url"] == f"{BASE_URL}/orders/{seeded.order_a}"
    assert one["rule_count"] == 2
    rules = (await client.get(f"/api/v1/orders/{seeded.order_a}/rules", headers=h)).json()
    assert {r["value"] for r in rules} == {"blocked-a.example", "also-a.example"}
    assert len((await client.get("/api/v1/jurisdictions", headers=h)).json()) == 2
    assert len((await client.get("/api/v1/authorities?jurisdiction=bb", headers=h)).json()) == 1


async def test_auditor_is_read_only(client: httpx.AsyncClient, seeded: Seeded) -> None:
    r = await client.post(
        f"/api/v1/orders/{seeded.order_a}/revoke",
        json={"reason": "no"},
        headers=bearer(seeded.tokens["auditor"]),
    )
    assert r.status_code == 403
    assert seeded.reader.order(seeded.order_a).status.value == "active"


async def test_operator_creates_jurisdiction_and_authority(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    h = bearer(seeded.tokens["operator"])
    r = await client.post(
        "/api/v1/jurisdictions",
        json={"code": "cc", "name": "Gammaland", "networks": ["10.3.0.0/16"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json() == {"code": "cc", "name": "Gammaland", "networks": ["10.3.0.0/16"]}
    again = await client.post("/api/v1/jurisdictions", json={"code": "cc", "name": "x"}, headers=h)
    assert again.status_code == 409
    r = await client.post(
        "/api/v1/authorities",
        json={"name": "Gamma Court", "kind": "court", "jurisdiction": "cc"},
        headers=h,
    )
    assert r.status_code == 201
    assert r.json()["jurisdiction"] == "cc"
    bad = await client.post(
        "/api/v1/jurisdictions", json={"code": "dd", "name": "D", "networks": ["nope"]}, headers=h
    )
    assert bad.status_code == 400


async def test_authority_publishes_amends_and_revokes_an_order(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    h = bearer(seeded.tokens["auth_a"])
    size = seeded.store.log_size()
    r = await client.post(
        "/api/v1/orders",
        json={
            "authority": seeded.authority_a,
            "title": "Second piracy order",
            "legal_basis": "Copyright Act s. 97A",
            "reference": "HC-2025-0099",
            "category": "court-order",
            "action": "nxdomain",
            "effective_from": "2025-02-01T00:00:00Z",
            "rules": HOSTS_LIST,
            "format": "hosts",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["rule_count"] == 2
    assert order["jurisdiction"] == "aa"
    assert order["log_index"] == size
    assert [i["line"] for i in order["issues"]] == [4]
    assert seeded.store.log_size() == size + 1

    lookup = (await client.get("/api/v1/lookup?name=pirate-one.example")).json()
    verdicts = {v["jurisdiction"]: v for v in lookup["verdicts"]}
    assert verdicts["aa"]["blocked"] and verdicts["aa"]["orders"] == [order["id"]]
    assert not verdicts["bb"]["blocked"]

    r = await client.post(
        f"/api/v1/orders/{order['id']}/amend",
        json={
            "add": "pirate-three.example\n",
            "remove": "pirate-two.example\n",
            "reason": "mirror",
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["rule_count"] == 2
    assert seeded.store.log_size() == size + 2

    r = await client.post(
        f"/api/v1/orders/{order['id']}/revoke", json={"reason": "site closed"}, headers=h
    )
    assert r.status_code == 200
    assert r.json()["status"] == "revoked"
    assert seeded.store.log_size() == size + 3
    again = await client.post(
        f"/api/v1/orders/{order['id']}/revoke", json={"reason": "again"}, headers=h
    )
    assert again.status_code == 409
    lookup = (await client.get("/api/v1/lookup?name=pirate-one.example")).json()
    assert not any(v["blocked"] for v in lookup["verdicts"])


async def test_invalid_orders_are_400_and_write_nothing(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    h = bearer(seeded.tokens["operator"])
    size = seeded.store.log_size()
    body = {
        "authority": seeded.authority_a,
        "title": "t",
        "legal_basis": "b",
        "reference": "r-1",
        "category": "court-order",
        "rules": "<html><body>not a list</body></html>\n" * 5,
    }
    assert (await client.post("/api/v1/orders", json=body, headers=h)).status_code == 400
    body["rules"] = "ok.example\n"
    body["expires"] = "2020-01-01T00:00:00Z"  # before it takes effect
    assert (await client.post("/api/v1/orders", json=body, headers=h)).status_code == 400
    body.pop("expires")
    body["authority"] = 999
    assert (await client.post("/api/v1/orders", json=body, headers=h)).status_code == 404
    body["authority"] = seeded.authority_a
    body["unknown_field"] = 1
    assert (await client.post("/api/v1/orders", json=body, headers=h)).status_code == 422
    assert seeded.store.log_size() == size


async def test_appeal_decision_and_contact_visibility(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    appeal = seeded.service.file_appeal(
        seeded.order_b, "blocked-b.example", "owner@b.example", "We hold a licence."
    )
    for role, sees in (("operator", True), ("auditor", True), ("auth_b", True), ("auth_a", False)):
        r = await client.get(f"/api/v1/appeals/{appeal.id}", headers=bearer(seeded.tokens[role]))
        assert (r.json()["contact"] == "owner@b.example") is sees, role
    size = seeded.store.log_size()
    r = await client.post(
        f"/api/v1/appeals/{appeal.id}/decide",
        json={"outcome": "upheld", "explanation": "Licence verified."},
        headers=bearer(seeded.tokens["auth_b"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "upheld"
    assert r.json()["decided_log_index"] == size
    again = await client.post(
        f"/api/v1/appeals/{appeal.id}/decide",
        json={"outcome": "rejected", "explanation": "x"},
        headers=bearer(seeded.tokens["operator"]),
    )
    assert again.status_code == 409


async def test_stats_count_orders_and_gateway_blocks(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    r = await client.get("/api/v1/stats", headers=bearer(seeded.tokens["auditor"]))
    s = r.json()
    assert s["orders_active"] == 3 and s["rules_active"] == 4
    assert {c["key"]: c["count"] for c in s["orders_by_jurisdiction"]} == {"aa": 1, "bb": 1, "*": 1}
    assert {c["key"] for c in s["orders_by_category"]} == {"court-order", "regulatory", "malware"}


async def test_subscription_refresh_from_url_and_file(
    client: httpx.AsyncClient, seeded: Seeded, list_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = list_server
    # an authority may not point the gateway at its own loopback (SSRF); an operator may
    h = bearer(seeded.tokens["auth_b"])
    body = {"order_id": seeded.order_b, "source": url}
    assert (await client.post("/api/v1/subscriptions", json=body, headers=h)).status_code == 403
    h = bearer(seeded.tokens["operator"])
    r = await client.post("/api/v1/subscriptions", json=body, headers=h)
    assert r.status_code == 201, r.text
    sub = r.json()
    r = await client.post(f"/api/v1/subscriptions/{sub['id']}/refresh", headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["added"], r.json()["removed"], r.json()["rule_count"]) == (2, 1, 2)
    assert r.json()["subscription"]["last_status"].startswith("ok")
    rules = {x.value for x in seeded.reader.order_rules(seeded.order_b)}
    assert rules == {"sub-one.example", "sub-two.example"}

    served.write_text("||sub-two.example^\n")
    size = seeded.store.log_size()
    r = await client.post(f"/api/v1/subscriptions/{sub['id']}/refresh", headers=h)
    assert (r.json()["added"], r.json()["removed"]) == (0, 1)
    assert seeded.store.log_size() == size + 1

    # local files are for operators only
    local = tmp_path / "local.txt"
    local.write_text("local.example\n")
    body = {"order_id": seeded.order_b, "source": str(local)}
    auth = bearer(seeded.tokens["auth_b"])
    assert (await client.post("/api/v1/subscriptions", json=body, headers=auth)).status_code == 403
    r = await client.post(f"/api/v1/subscriptions/{sub['id']}/refresh", headers=auth)
    assert r.status_code == 403  # nor refresh from an internal URL
    op = bearer(seeded.tokens["operator"])
    r = await client.post("/api/v1/subscriptions", json=body, headers=op)
    assert r.status_code == 201
    r = await client.post(f"/api/v1/subscriptions/{r.json()['id']}/refresh", headers=op)
    assert r.json()["rule_count"] == 1
    listed = (await client.get("/api/v1/subscriptions", headers=op)).json()
    assert len(listed) == 2


async def test_public_lookup_rejects_invalid_names(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/lookup", params={"name": "bad..name"})
    assert r.status_code == 400
    r = await client.get("/api/v1/lookup", params={"name": "Bücher.example"})
    assert r.status_code == 200
    assert r.json()["name"] == "xn--bcher-kva.example"


async def test_openapi_documents_every_route_with_bearer_auth(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/v1/openapi.json")).json()
    assert "/api/v1/orders" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert not any(p.startswith("/orders") for p in spec["paths"])  # portal pages stay out


async def test_a_cert_publishes_and_amends_its_feed_for_every_jurisdiction(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    """A CERT's own token may issue a security feed that binds every jurisdiction (each
    opts out by an exception order of its own), and only a security feed; a court's may not."""
    cert = seeded.service.add_authority("Alphaland CERT", AuthorityKind.CERT, "aa")
    token = TokenStore(seeded.store).create("authority", cert.id, "cert")[0]
    feed = {
        "authority": cert.id,
        "title": "Phishing kits",
        "legal_basis": "CERT mandate s.2",
        "reference": "CERT-1",
        "category": "phishing",
        "all_jurisdictions": True,
        "rules": "kit.example\n",
    }
    r = await client.post("/api/v1/orders", json=feed, headers=bearer(token))
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["all_jurisdictions"] and order["jurisdiction"] == "*"
    r = await client.post(
        f"/api/v1/orders/{order['id']}/amend",
        json={"add": "kit2.example\n", "reason": "more kits"},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text
    size = seeded.store.log_size()
    not_security = {**feed, "reference": "CERT-2", "category": "regulatory"}
    r = await client.post("/api/v1/orders", json=not_security, headers=bearer(token))
    assert r.status_code in (400, 403, 422), r.text
    court = {**feed, "authority": seeded.authority_a, "reference": "HC-9"}
    r = await client.post("/api/v1/orders", json=court, headers=bearer(seeded.tokens["auth_a"]))
    assert r.status_code == 403, r.text
    assert seeded.store.log_size() == size
