"""Table tests of reconciliation: every verdict, the propagation delay, and scoping."""

from __future__ import annotations

import datetime as dt

import pytest

from clearwall.probe.classify import Classification, Kind
from clearwall.probe.reconcile import NameProof, PublishedOrder, Verdict, reconcile

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DELAY = dt.timedelta(minutes=5)
BLOCKED = Classification(Kind.DNS_TRANSPARENT_BLOCK, ("EDE 16",))
OPEN = Classification(Kind.ACCESSIBLE, ("ok",))


def order(
    start_min: float | None = -60, end_min: float | None = None, jurisdiction: str = "XA"
) -> PublishedOrder:
    start = NOW + dt.timedelta(minutes=start_min) if start_min is not None else None
    end = NOW + dt.timedelta(minutes=end_min) if end_min is not None else None
    return PublishedOrder(7, jurisdiction, start, end)


def proof(*orders: PublishedOrder, verified: bool = True) -> NameProof:
    return NameProof(
        "site.test", "XA", verified, orders, "origin/5/abc", None if verified else "bad signature"
    )


CASES = [
    ("blocked, order in force", BLOCKED, proof(order()), Verdict.PUBLISHED_AND_ENFORCED),
    ("blocked, no order", BLOCKED, proof(), Verdict.ENFORCED_BUT_UNPUBLISHED),
    (
        "tcp block, no order",
        Classification(Kind.TCP_BLOCKING),
        proof(),
        Verdict.ENFORCED_BUT_UNPUBLISHED,
    ),
    (
        "blocked, other jurisdiction's order",
        BLOCKED,
        proof(order(jurisdiction="XB")),
        Verdict.ENFORCED_BUT_UNPUBLISHED,
    ),
    (
        "blocked, all-jurisdiction order",
        BLOCKED,
        proof(order(jurisdiction="*")),
        Verdict.PUBLISHED_AND_ENFORCED,
    ),
    (
        "blocked before the order starts",
        BLOCKED,
        proof(order(start_min=10)),
        Verdict.ENFORCED_BUT_UNPUBLISHED,
    ),
    (
        "blocked just after start",
        BLOCKED,
        proof(order(start_min=-1)),
        Verdict.PUBLISHED_AND_ENFORCED,
    ),
    (
        "blocked within delay after end",
        BLOCKED,
        proof(order(end_min=-2)),
        Verdict.PUBLISHED_AND_ENFORCED,
    ),
    (
        "blocked long after end",
        BLOCKED,
        proof(order(end_min=-30)),
        Verdict.ENFORCED_BUT_UNPUBLISHED,
    ),
    ("open, order in force", OPEN, proof(order()), Verdict.PUBLISHED_BUT_NOT_ENFORCED),
    ("open, order within delay", OPEN, proof(order(start_min=-2)), Verdict.CONSISTENT_ALLOW),
    ("open, order ended", OPEN, proof(order(end_min=-1)), Verdict.CONSISTENT_ALLOW),
    ("open, no order", OPEN, proof(), Verdict.CONSISTENT_ALLOW),
    ("undetermined", Classification(Kind.UNDETERMINED), proof(order()), Verdict.INCONCLUSIVE),
    ("down, no order", Classification(Kind.DOWN), proof(), Verdict.CONSISTENT_ALLOW),
    ("proof failed", BLOCKED, proof(order(), verified=False), Verdict.UNVERIFIED),
    (
        "page differs, no order",
        Classification(Kind.HTTP_DIFF, weak=True),
        proof(),
        Verdict.INCONCLUSIVE,
    ),
    (
        "page differs, order",
        Classification(Kind.HTTP_DIFF, weak=True),
        proof(order()),
        Verdict.PUBLISHED_AND_ENFORCED,
    ),
    (
        "http reset, no order",
        Classification(Kind.HTTP_DIFF),
        proof(),
        Verdict.ENFORCED_BUT_UNPUBLISHED,
    ),
]


@pytest.mark.parametrize(
    ("classification", "name_proof", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reconcile(classification: Classification, name_proof: NameProof, verdict: Verdict) -> None:
    assert reconcile(classification, name_proof, at=NOW, delay=DELAY).verdict is verdict


def test_no_log() -> None:
    assert reconcile(BLOCKED, None, at=NOW).verdict is Verdict.UNVERIFIED


def test_claims_are_evidence_not_proof() -> None:
    result = reconcile(BLOCKED, proof(), at=NOW, claims=("j=order 999",))
    assert result.verdict is Verdict.ENFORCED_BUT_UNPUBLISHED
    assert any("claim" in e for e in result.evidence)


def test_cited_order_that_the_proof_does_not_show() -> None:
    claims = ("j=Secret; ordered by XA Court <https://portal.example/orders/2>",)
    result = reconcile(BLOCKED, proof(order()), at=NOW, claims=claims)
    assert result.verdict is Verdict.PUBLISHED_AND_ENFORCED  # order 7 covers it
    assert any("cites order 2" in e for e in result.evidence)
    honest = reconcile(BLOCKED, proof(order()), at=NOW, claims=("j=x <https://p/orders/7>",))
    assert not any("cites order" in e for e in honest.evidence)
