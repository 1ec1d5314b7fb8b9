"""The portal's view of cross-border requests: per-jurisdiction pages, the request page,
the link from the accepting order, the statistics matrix, the log page and the feed."""

from __future__ import annotations

import datetime as dt
import re
from xml.etree import ElementTree as ET

import httpx
import pytest

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store.records import CrossBorderRequest, RequestStatus
from clearwall.web.portal.requests import took
from web.seeding import Seeded

NAMES = [RuleSpec(RuleKind.SUBTREE, "phish-bank.example")]


def two_requests(seeded: Seeded) -> tuple[int, int, int]:
    """aa asks bb twice: bb accepts one (its order's id) and refuses the other."""
    svc = seeded.service
    accepted = svc.file_request(
        seeded.authority_a, "bb", "block", "phishing", "Act A", "A-1", NAMES
    )
    refused = svc.file_request(seeded.authority_a, "bb", "block", "phishing", "Act A", "A-2", NAMES)
    _, order = svc.accept_request(accepted.id, seeded.authority_b, "Code B art. 8", "B-ORD-1")
    svc.refuse_request(refused.id, seeded.authority_b, "the site is lawful in Betaland")
    return accepted.id, refused.id, order.id


def text(html: str) -> str:
    """The page's text, tags removed, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def test_pages_show_incoming_outgoing_status_and_decision(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    accepted, _, order = two_requests(seeded)
    incoming = (await client.get("/jurisdictions/bb/requests")).text
    assert incoming.index("Incoming") < incoming.index(f'href="/requests/{accepted}"')
    assert "the site is lawful in Betaland" in incoming
    assert f'href="/orders/{order}"' in incoming
    outgoing = (await client.get("/jurisdictions/aa/requests")).text
    assert text(outgoing).count("accepted") >= 1 and "refused" in outgoing
    page = text((await client.get(f"/requests/{accepted}")).text)
    assert "AA asks BB to block 1 name" in page
    assert "Legal basis (in AA) Act A" in page and "Time to decision" in page
    assert "subtree phish-bank.example" in page
    assert (await client.get("/requests/999")).status_code == 404


async def test_the_order_of_an_accepted_request_links_it(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    accepted, _, order = two_requests(seeded)
    page = (await client.get(f"/orders/{order}")).text
    assert f'<a href="/requests/{accepted}">request #{accepted}</a> of AA' in page
    assert "Code B art. 8" in page
    other = (await client.get(f"/orders/{seeded.order_b}")).text
    assert "/requests/" not in other


async def test_stats_show_the_matrix_and_log_and_feed_carry_requests(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    accepted, refused, _ = two_requests(seeded)
    stats = text((await client.get("/stats")).text)
    assert "Requests between jurisdictions and their outcomes" in stats
    assert "AA 1 accepted · 1 refused" in stats
    log = (await client.get("/log")).text
    assert f'href="/requests/{refused}"' in log
    root = ET.fromstring((await client.get("/feed.atom")).content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert titles[0] == f"Request #{refused} refused by Betaland Media Regulator"
    assert "AA asks BB to block 1 name(s): A-1" in titles
    links = [e.find("a:link", ns).get("href") for e in root.findall("a:entry", ns)]  # type: ignore[union-attr]
    assert f"http://portal.test/requests/{accepted}" in links


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(12, "12 s"), (150, "2 min"), (5400, "1.5 h"), (3 * 86400, "3.0 days")],
)
def test_time_to_decision_reads_as_a_person_says_it(seconds: int, shown: str) -> None:
    filed = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    r = CrossBorderRequest(
        1, 1, "aa", "bb", "block", "phishing", "b", "r", (), "0" * 64,
        RequestStatus.REFUSED, "no", filed,
        decided_at=filed + dt.timedelta(seconds=seconds),
    )  # fmt: skip
    assert took(r) == shown
