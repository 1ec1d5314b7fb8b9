"""The console's requests page: the receiver decides with its own order or a reason, the
sender withdraws; neither can take the other's step (403, nothing written)."""

from __future__ import annotations

import re

import httpx
import pytest

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store.records import RequestStatus
from web.seeding import Seeded
from web.test_console import _csrf, browser, console_app, sign_in

__all__ = ["browser", "console_app"]  # the fixtures this module shares with test_console

NAMES = [RuleSpec(RuleKind.SUBTREE, "phish-bank.example")]


def filed(s: Seeded) -> int:
    """A request of aa's court to bb."""
    return s.service.file_request(
        s.authority_a, "bb", "block", "phishing", "Act A", "A-1", NAMES
    ).id


async def test_the_receiver_accepts_with_an_order_of_its_own(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    s = seeded_sqlite
    rid = filed(s)
    await sign_in(browser, s.tokens["auth_b"])
    page = await browser.get("/console/requests")
    assert f"Accept request #{rid}" in page.text and "Act A" in page.text
    r = await browser.post(
        f"/console/requests/{rid}/accept",
        data={
            "csrf_token": _csrf(page.text),
            "authority": str(s.authority_b),
            "legal_basis": "Code B art. 8",
            "reference": "B-ORD-1",
            "action": "nxdomain",
        },
    )
    assert r.status_code == 303, r.text
    assert "accepted+as+order" in r.headers["location"]
    request = s.reader.request(rid)
    assert request.status is RequestStatus.ACCEPTED and request.order_id is not None
    order = s.reader.order(request.order_id)
    assert (order.authority_id, order.legal_basis) == (s.authority_b, "Code B art. 8")


@pytest.mark.parametrize(
    ("token", "step", "data"),
    [
        ("auth_a", "accept", {"authority": "1", "legal_basis": "b", "reference": "r"}),
        ("auth_a", "accept", {"authority": "2", "legal_basis": "b", "reference": "r"}),
        ("auth_a", "refuse", {"authority": "2", "reason": "no"}),
        ("auth_b", "withdraw", {"reason": "no"}),
        ("auditor", "refuse", {"authority": "2", "reason": "no"}),
    ],
    ids=["sender-accepts", "sender-names-receiver", "sender-refuses", "receiver-withdraws",
         "auditor"],
)  # fmt: skip
async def test_no_one_takes_the_other_sides_step(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded, token: str, step: str, data: dict[str, str]
) -> None:
    s = seeded_sqlite
    rid = filed(s)
    size = s.store.log_size()
    orders = len(s.reader.orders())
    await sign_in(browser, s.tokens[token])
    page = await browser.get("/console/requests")
    r = await browser.post(
        f"/console/requests/{rid}/{step}", data={**data, "csrf_token": _csrf(page.text)}
    )
    assert r.status_code == 403, r.text
    assert s.store.log_size() == size and len(s.reader.orders()) == orders
    assert s.reader.request(rid).status is RequestStatus.OPEN


async def test_the_sender_sees_its_request_outgoing_and_withdraws_it(
    browser: httpx.AsyncClient, seeded_sqlite: Seeded
) -> None:
    s = seeded_sqlite
    rid = filed(s)
    await sign_in(browser, s.tokens["auth_a"])
    page = await browser.get("/console/requests")
    assert "No incoming requests." in page.text
    assert not re.search(rf"Accept request #{rid}", page.text)
    r = await browser.post(
        f"/console/requests/{rid}/withdraw",
        data={"csrf_token": _csrf(page.text), "reason": "site gone"},
    )
    assert r.status_code == 303
    assert s.reader.request(rid).status is RequestStatus.WITHDRAWN
