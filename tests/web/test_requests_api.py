"""The requests API end to end on a real database: aa asks bb, bb decides, all on the log."""

from __future__ import annotations

import httpx
import pytest

from clearwall.ledger import entries
from web.seeding import Seeded, bearer

HOSTS = "0.0.0.0 phish-bank.example\n0.0.0.0 c2.example\n"  # a hosts file: any list format


def _filing(seeded: Seeded, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "authority": seeded.authority_a,
        "to": "bb",
        "category": "phishing",
        "legal_basis": "Alphaland Fraud Act s. 3",
        "reference": "AA-REQ-9",
        "names": HOSTS,
    }
    body.update(kw)
    return body


async def test_aa_requests_bb_accepts_and_the_order_cites_it(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    r = await client.post(
        "/api/v1/requests", json=_filing(seeded), headers=bearer(seeded.tokens["auth_a"])
    )
    assert r.status_code == 201, r.text
    filed = r.json()
    assert filed["names"] == ["exact c2.example", "exact phish-bank.example"]
    assert (filed["from_jurisdiction"], filed["to_jurisdiction"], filed["status"]) == (
        "aa",
        "bb",
        "open",
    )
    orders_before = len(seeded.reader.orders())
    r = await client.post(
        f"/api/v1/requests/{filed['id']}/accept",
        json={
            "authority": seeded.authority_b,
            "legal_basis": "Betaland Consumer Code art. 8",
            "reference": "BB-ORD-1",
        },
        headers=bearer(seeded.tokens["auth_b"]),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["request"]["status"] == "accepted"
    assert out["request"]["order_id"] == out["order"]["id"]
    assert out["request"]["time_to_decision_seconds"] >= 0
    assert out["order"]["jurisdiction"] == "bb"
    assert out["order"]["legal_basis"] == "Betaland Consumer Code art. 8"
    assert len(seeded.reader.orders()) == orders_before + 1
    last = entries.parse(seeded.store.log_entries()[-1].data)
    assert isinstance(last, entries.RequestDecided) and last.order == out["order"]["id"]
    listed = await client.get(
        "/api/v1/requests?jurisdiction=aa", headers=bearer(seeded.tokens["auditor"])
    )
    assert [x["id"] for x in listed.json()] == [filed["id"]]
    again = await client.post(
        f"/api/v1/requests/{filed['id']}/refuse",
        json={"reason": "late"},
        headers=bearer(seeded.tokens["auth_b"]),
    )
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("token", "body_of", "status"),
    [
        ("auditor", lambda s: _filing(s), 403),
        ("auth_a", lambda s: _filing(s, to="aa"), 400),  # to itself: publish an order instead
        ("auth_a", lambda s: _filing(s, to="zz"), 404),
        ("auth_a", lambda s: _filing(s, names="not a list at all ###\n"), 400),
        ("operator", lambda s: _filing(s), 201),
    ],
    ids=["auditor", "to-itself", "unknown-jurisdiction", "no-names", "operator"],
)
async def test_filing_is_checked(
    client: httpx.AsyncClient, seeded: Seeded, token: str, body_of: object, status: int
) -> None:
    size = seeded.store.log_size()
    r = await client.post(
        "/api/v1/requests",
        json=body_of(seeded),  # type: ignore[operator]
        headers=bearer(seeded.tokens[token]),
    )
    assert r.status_code == status, r.text
    assert seeded.store.log_size() == size + (1 if status == 201 else 0)


async def test_the_sender_withdraws_its_own_request(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    h = bearer(seeded.tokens["auth_a"])
    filed = (await client.post("/api/v1/requests", json=_filing(seeded), headers=h)).json()
    r = await client.post(
        f"/api/v1/requests/{filed['id']}/withdraw", json={"reason": "site gone"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "withdrawn" and r.json()["time_to_decision_seconds"] is None
