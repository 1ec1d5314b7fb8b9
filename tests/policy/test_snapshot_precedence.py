"""Precedence, scoping and time rules of the matcher, checked on the reference, the
compiled snapshot and the snapshot after save/load alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from matcher_builders import DAY, NOW, matchers, order, summary

from clearwall.model import ALLOWED, Action, OrderStatus

ALLOW: tuple[str, None, tuple[int, ...]] = ("allow", None, ())

NAME_CASES = [
    pytest.param(
        [order(1, rules=["exact example.com"])],
        [
            ("example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("www.example.com", "de", 0, ALLOW),
            ("com", "de", 0, ALLOW),
        ],
        id="exact-covers-only-the-name",
    ),
    pytest.param(
        [order(1, rules=["subtree example.com"])],
        [
            ("example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("a.b.example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("notexample.com", "de", 0, ALLOW),
            ("example.com.evil", "de", 0, ALLOW),
            ("com", "de", 0, ALLOW),
        ],
        id="subtree-covers-name-and-below-on-label-boundaries",
    ),
    pytest.param(
        [order(1, rules=["wildcard example.com"])],
        [
            ("example.com", "de", 0, ALLOW),
            ("www.example.com", "de", 0, ("block", "nxdomain", (1,))),
        ],
        id="wildcard-spares-the-apex",
    ),
    pytest.param(
        [
            order(1, rules=["subtree ads.example.com"]),
            order(2, rules=["allow-subtree ads.example.com"]),
        ],
        [
            ("ads.example.com", "de", 0, ("allow", None, (2,))),
            ("x.ads.example.com", "de", 0, ("allow", None, (2,))),
        ],
        id="allow-at-equal-specificity-wins",
    ),
    pytest.param(
        [
            order(1, rules=["subtree bad.example.com"]),
            order(2, rules=["allow-subtree example.com"]),
        ],
        [
            ("bad.example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("x.bad.example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("example.com", "de", 0, ALLOW),
            ("good.example.com", "de", 0, ALLOW),
        ],
        id="allow-at-lower-specificity-loses",
    ),
    pytest.param(
        [order(1, rules=["subtree example.com"]), order(2, rules=["allow-exact good.example.com"])],
        [
            ("good.example.com", "de", 0, ("allow", None, (2,))),
            ("x.good.example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("example.com", "de", 0, ("block", "nxdomain", (1,))),
        ],
        id="allow-at-higher-specificity-wins",
    ),
    pytest.param(
        [order(1, rules=["exact example.com"]), order(2, rules=["allow-subtree example.com"])],
        [
            ("example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("www.example.com", "de", 0, ALLOW),
        ],
        id="exact-block-beats-subtree-allow-at-same-name",
    ),
    pytest.param(
        [order(1, rules=["subtree example.com"]), order(2, rules=["allow-exact example.com"])],
        [
            ("example.com", "de", 0, ("allow", None, (2,))),
            ("www.example.com", "de", 0, ("block", "nxdomain", (1,))),
        ],
        id="exact-allow-beats-subtree-block-at-same-name",
    ),
    pytest.param(
        [order(1, rules=["subtree example.com"]), order(2, rules=["allow-wildcard example.com"])],
        [
            ("example.com", "de", 0, ("block", "nxdomain", (1,))),
            ("www.example.com", "de", 0, ("allow", None, (2,))),
        ],
        id="wildcard-allow-spares-apex-block",
    ),
    pytest.param(
        [
            order(1, rules=["subtree example.com"]),
            order(2, rules=["exact www.example.com"]),
            order(3, rules=["subtree www.example.com"]),
            order(4, rules=["subtree other.com"]),
        ],
        [
            ("www.example.com", "de", 0, ("block", "nxdomain", (2, 3, 1))),
            ("a.www.example.com", "de", 0, ("block", "nxdomain", (3, 1))),
        ],
        id="every-blocking-order-cited-most-specific-first",
    ),
    pytest.param(
        [order(2, rules=["subtree x.com"]), order(1, rules=["subtree x.com"])],
        [("x.com", "de", 0, ("block", "nxdomain", (1, 2)))],
        id="equal-specificity-cited-by-order-id",
    ),
    pytest.param(
        [
            order(1, rules=["subtree example.com"]),
            order(2, rules=["subtree a.example.com"]),
            order(3, rules=["allow-subtree example.com"]),
        ],
        [
            ("a.example.com", "de", 0, ("block", "nxdomain", (2,))),
            ("b.example.com", "de", 0, ("allow", None, (3,))),
        ],
        id="overridden-blocks-are-not-cited",
    ),
    pytest.param(
        [
            order(1, rules=["subtree x.com"], action=Action.SINKHOLE),
            order(2, rules=["subtree x.com"], action=Action.NXDOMAIN),
            order(3, rules=["subtree x.com"], action=Action.NODATA),
        ],
        [("x.com", "de", 0, ("block", "nxdomain", (1, 2, 3)))],
        id="action-tie-broken-by-precedence",
    ),
    pytest.param(
        [
            order(1, rules=["subtree x.com"], action=Action.REFUSED),
            order(2, rules=["subtree a.x.com"], action=Action.SINKHOLE),
        ],
        [
            ("a.x.com", "de", 0, ("block", "sinkhole", (2, 1))),
            ("b.x.com", "de", 0, ("block", "refused", (1,))),
        ],
        id="most-specific-block-sets-the-action",
    ),
    pytest.param(
        [order(1, rules=["subtree x.com nodata", "exact y.com refused", "exact z.com"])],
        [
            ("x.com", "de", 0, ("block", "nodata", (1,))),
            ("y.com", "de", 0, ("block", "refused", (1,))),
            ("z.com", "de", 0, ("block", "nxdomain", (1,))),
        ],
        id="rule-action-overrides-order-action",
    ),
    pytest.param(
        [
            order(1, "de", rules=["subtree x.com"]),
            order(2, "fr", rules=["subtree y.com"]),
            order(3, "de", rules=["subtree z.com"], everywhere=True),
            order(4, "fr", rules=["allow-subtree z.com"]),
        ],
        [
            ("x.com", "de", 0, ("block", "nxdomain", (1,))),
            ("x.com", "fr", 0, ALLOW),
            ("x.com", "zz", 0, ALLOW),
            ("y.com", "fr", 0, ("block", "nxdomain", (2,))),
            ("y.com", "de", 0, ALLOW),
            ("z.com", "de", 0, ("block", "nxdomain", (3,))),
            ("z.com", "zz", 0, ("block", "nxdomain", (3,))),
            ("z.com", "fr", 0, ("allow", None, (4,))),
        ],
        id="jurisdiction-scoping",
    ),
    pytest.param(
        [order(1, rules=["subtree x.com"], start_day=5, end_day=20)],
        [
            ("x.com", "de", -10 + 4.99, ALLOW),
            ("x.com", "de", -10 + 5, ("block", "nxdomain", (1,))),
            ("x.com", "de", -10 + 19.99, ("block", "nxdomain", (1,))),
            ("x.com", "de", -10 + 20, ALLOW),
            ("x.com", "de", 100, ALLOW),
        ],
        id="effective-from-and-sunset",
    ),
    pytest.param(
        [
            order(1, rules=["subtree x.com"]),
            order(2, rules=["allow-subtree x.com"], end_day=15),
        ],
        [
            ("x.com", "de", 0, ("allow", None, (2,))),
            ("x.com", "de", 6, ("block", "nxdomain", (1,))),
        ],
        id="expired-exception-stops-allowing",
    ),
    pytest.param(
        [
            order(1, rules=["subtree x.com"], status=OrderStatus.REVOKED),
            order(2, rules=["subtree y.com"], status=OrderStatus.EXPIRED),
        ],
        [("x.com", "de", 0, ALLOW), ("y.com", "de", 0, ALLOW)],
        id="revoked-and-expired-status-never-match",
    ),
]


@pytest.mark.parametrize(("orders", "queries"), NAME_CASES)
def test_name_precedence(orders: list, queries: list, tmp_path: Path) -> None:
    for label, match in matchers(orders, tmp_path).items():
        for name, jurisdiction, day, expected in queries:
            got = summary(match(name, jurisdiction, NOW + day * DAY))
            assert got == expected, (label, name, jurisdiction, day)


IP_CASES = [
    pytest.param(
        [
            order(1, rules=["response-ip 192.0.2.0/24"]),
            order(2, rules=["allow-response-ip 192.0.2.128/25"]),
            order(3, rules=["response-ip 192.0.2.200/32"], action=Action.NODATA),
        ],
        [
            ("192.0.2.1", "de", 0, ("block", "nxdomain", (1,))),
            ("192.0.2.129", "de", 0, ("allow", None, (2,))),
            ("192.0.2.200", "de", 0, ("block", "nodata", (3,))),
            ("198.51.100.1", "de", 0, ALLOW),
            ("192.0.2.1", "fr", 0, ALLOW),
        ],
        id="v4-longest-prefix",
    ),
    pytest.param(
        [
            order(1, rules=["response-ip 2001:db8::/32"]),
            order(2, rules=["allow-response-ip 2001:db8:1::/48"]),
            order(3, rules=["response-ip 2001:db8::/32"], everywhere=True),
        ],
        [
            ("2001:db8::1", "de", 0, ("block", "nxdomain", (1, 3))),
            ("2001:db8::1", "fr", 0, ("block", "nxdomain", (3,))),
            ("2001:db8:1::1", "de", 0, ("allow", None, (2,))),
            ("2001:db9::1", "de", 0, ALLOW),
            ("192.0.2.1", "de", 0, ALLOW),
        ],
        id="v6-and-all-jurisdictions",
    ),
    pytest.param(
        [
            order(1, rules=["response-ip 10.0.0.0/8"]),
            order(2, rules=["allow-response-ip 10.0.0.0/8"], start_day=20),
        ],
        [
            ("10.1.2.3", "de", 0, ("block", "nxdomain", (1,))),
            ("10.1.2.3", "de", 11, ("allow", None, (2,))),
        ],
        id="equal-prefix-allow-wins-once-effective",
    ),
]


@pytest.mark.parametrize(("orders", "queries"), IP_CASES)
def test_ip_precedence(orders: list, queries: list, tmp_path: Path) -> None:
    for label, match in matchers(orders, tmp_path, ip=True).items():
        for address, jurisdiction, day, expected in queries:
            got = summary(match(address, jurisdiction, NOW + day * DAY))
            assert got == expected, (label, address, jurisdiction, day)


def test_miss_returns_the_shared_allowed(tmp_path: Path) -> None:
    m = matchers([order(1, rules=["subtree x.com", "response-ip 10.0.0.0/8"])], tmp_path)
    assert m["compiled"]("y.com", "de", NOW) is ALLOWED
    assert m["loaded"]("y.com", "de", NOW) is ALLOWED


def test_hits_are_memoized_per_rule_and_jurisdiction(tmp_path: Path) -> None:
    m = matchers([order(1, rules=["subtree x.com"], everywhere=True)], tmp_path)["loaded"]
    first = m("a.x.com", "de", NOW)
    assert m("b.x.com", "de", NOW) is first
    assert m("a.x.com", "de", NOW + 1) is first
    assert m("a.x.com", "fr", NOW) == first
    assert first.citations[0].rule == "subtree x.com"


def test_memo_stays_bounded_and_correct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import clearwall.policy.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "MEMO_LIMIT", 4)
    rules = [f"subtree n{i}.com" for i in range(20)]
    m = matchers([order(1, rules=rules, action=Action.NODATA)], tmp_path)["compiled"]
    for _round in range(3):
        for i in range(20):
            assert summary(m(f"a.n{i}.com", "de", NOW)) == ("block", "nodata", (1,))
            assert summary(m(f"n{i}.com", "fr", NOW)) == ALLOW
    view = m.__self__._views["de"]  # type: ignore[attr-defined]
    assert len(view.below) <= 4
