"""The differential test: a generated policy of more than 10,000 rules (subtrees, exact
names, wildcards, exceptions of every kind across orders of both bases, response-IP
rules and their exceptions) served by the primary to a real Unbound configured by
``clearwall fleet config unbound``; for every listed name, a name below each and
unlisted names, Unbound gives the same decision and action as ``clearwall check``."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest

from clearwall.model import Action, Category, RuleKind, Verdict
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store
from clearwall.store.loader import build_snapshot
from clearwall.store.reader import PolicyReader

from .conftest import COURT, OPERATOR, RunningPrimary, fleet_config
from .secondaries import Authoritative, Unbound, free_port, require


@pytest.fixture(autouse=True)
def _installed() -> None:
    require("unbound", "nsd")


SINKHOLE = "127.0.0.1"  # [dns.block] sinkhole_ipv4, the default the zones are written with
WORDS = [f"w{i}" for i in range(12)]
KINDS = [
    (RuleKind.SUBTREE, 30),
    (RuleKind.EXACT, 30),
    (RuleKind.WILDCARD, 8),
    (RuleKind.ALLOW_EXACT, 8),
    (RuleKind.ALLOW_SUBTREE, 6),
    (RuleKind.ALLOW_WILDCARD, 3),
]
ACTIONS = [Action.NXDOMAIN, Action.NODATA, Action.SINKHOLE]


def generated_names(rng: random.Random) -> list[str]:
    """Names that nest often: a few hundred domains, words below them, up to 4 labels."""
    domains = [f"d{i}.example" for i in range(400)]
    names = set(domains)
    while len(names) < 7000:
        depth = rng.choice([1, 1, 2, 2, 3])
        names.add(".".join([*(rng.choice(WORDS) for _ in range(depth)), rng.choice(domains)]))
    return sorted(names)


def generated_orders(
    rng: random.Random, names: list[str]
) -> list[tuple[int, list[RuleSpec], Action]]:
    """(authority, rules, action) of eight orders, 10,000+ rules in all."""
    kinds = [k for k, weight in KINDS for _ in range(weight)]
    orders = []
    for i in range(8):
        rules = {
            RuleSpec(rng.choice(kinds), rng.choice(names), rng.choice([None, None, *ACTIONS]))
            for _ in range(1300)
        }
        for _ in range(60):
            length = rng.choice([8, 12, 16, 20, 24, 28, 32])
            address = ipaddress.ip_address(
                f"10.{rng.randrange(4)}.{rng.randrange(8)}.{rng.randrange(16)}"
            )
            network = ipaddress.ip_network(f"{address}/{length}", strict=False)
            kind = RuleKind.ALLOW_RESPONSE_IP if rng.random() < 0.3 else RuleKind.RESPONSE_IP
            rules.add(RuleSpec(kind, str(network), rng.choice([None, *ACTIONS])))
        authority = COURT if i % 2 == 0 else OPERATOR
        orders.append((authority, list(rules), ACTIONS[i % 3]))
    return orders


def expected(verdict: Verdict) -> str:
    return verdict.action.value if verdict.blocked and verdict.action else "allowed"


async def ask_all(port: int, names: list[str]) -> dict[str, str]:
    """What Unbound does with each name: nxdomain, nodata, sinkhole or allowed."""
    limit = asyncio.Semaphore(48)
    out: dict[str, str] = {}

    async def ask(name: str) -> None:
        # An allowed name is looked up at nsd (TTL 0: every time); a SERVFAIL would not be
        # a policy answer, so it is asked again.
        async with limit:
            for attempt in range(5):
                try:
                    response = await dns.asyncquery.udp(
                        dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5
                    )
                except dns.exception.Timeout:
                    if attempt == 4:
                        out[name] = "timeout"
                        return
                    continue
                if response.rcode() != dns.rcode.SERVFAIL:
                    break
                await asyncio.sleep(0.05)
        if response.rcode() == dns.rcode.NXDOMAIN:
            out[name] = "nxdomain"
            return
        addresses = [rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == 1]
        if not addresses:
            out[name] = "nodata" if response.rcode() == dns.rcode.NOERROR else "servfail"
        elif addresses == [SINKHOLE]:
            out[name] = "sinkhole"
        else:
            out[name] = "allowed"

    await asyncio.gather(*(ask(n) for n in names))
    return out


@pytest.fixture
def addresses() -> dict[str, str]:
    """Names under ip.example, each answering one address in 10.0.0.0/14."""
    rng = random.Random(7)
    return {
        f"h{i}.ip.example": f"10.{rng.randrange(4)}.{rng.randrange(8)}.{rng.randrange(256)}"
        for i in range(400)
    }


@pytest.fixture
def upstream(tmp_path: Path, addresses: dict[str, str]) -> Iterator[Authoritative]:
    extra = "\n".join(f"{n.removesuffix('.example')} A {a}" for n, a in addresses.items())
    nsd = Authoritative(tmp_path / "nsd", extra)
    nsd.start(probe="x.example.")
    yield nsd
    nsd.stop()


def test_unbound_decides_every_name_as_clearwall_check(
    service: PolicyService,
    store: Store,
    sqlite_url: str,
    tmp_path: Path,
    upstream: Authoritative,
    addresses: dict[str, str],
    primary_factory: Callable[..., RunningPrimary],
) -> None:
    rng = random.Random(2026)
    names = generated_names(rng)
    total = 0
    for n, (authority, rules, action) in enumerate(generated_orders(rng, names)):
        category = Category.COURT_ORDER if authority == COURT else Category.MALWARE
        service.add_order(authority, f"o{n}", "basis", f"ref-{n}", category, action, rules)
        total += len(rules)
    assert total >= 10_000

    primary_port = free_port()
    fragment = fleet_config(
        tmp_path, "unbound", "--jurisdiction", "xa", "--primary", f"127.0.0.1:{primary_port}"
    )
    unbound = Unbound(tmp_path / "unbound", upstream.port, fragment)
    running = primary_factory(listen=[f"127.0.0.1:{primary_port}"])
    snapshot = build_snapshot(store)
    reader = PolicyReader(store)
    listed = sorted(
        {r.value for o in reader.orders() for r in reader.order_rules(o.id) if not r.kind.is_ip}
    )
    queries = [*listed, *(f"q.{n}" for n in listed), *(f"u{i}.example" for i in range(300))]
    want = {q: expected(snapshot.match(q, "xa")) for q in queries}
    want.update({n: expected(snapshot.match_ip(a, "xa")) for n, a in addresses.items()})
    assert sum(v != "allowed" for v in want.values()) > 5000  # a real mix
    assert sum(v == "allowed" for v in want.values()) > 3000

    unbound.start()
    try:
        # Loaded when a name of each zone is enforced.
        court = next(
            q for q in queries if want[q] != "allowed" and snapshot.match(q, "xa").ede == 16
        )
        operator = next(
            q for q in queries if want[q] != "allowed" and snapshot.match(q, "xa").ede == 15
        )
        deadline = time.monotonic() + 60
        while asyncio.run(ask_all(unbound.port, [court, operator])) != {
            court: want[court],
            operator: want[operator],
        }:
            assert time.monotonic() < deadline, unbound.output()
            time.sleep(0.2)
        got = asyncio.run(ask_all(unbound.port, list(want)))
    finally:
        unbound.stop()
    wrong = {q: (want[q], got[q]) for q in want if want[q] != got[q]}
    assert not wrong, f"{len(wrong)} of {len(want)} differ (expected, Unbound): " + ", ".join(
        f"{q}: {w}" for q, w in list(wrong.items())[:20]
    )
    assert running.primary.metrics.refused.labels("acl")._value.get() == 0

    # What ``clearwall check`` prints is what the in-process snapshot says.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["CLEARWALL_DB"] = sqlite_url
    for name in rng.sample(queries, 8):
        proc = subprocess.run(
            [sys.executable, "-m", "clearwall", "check", name, "--jurisdiction", "xa", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        result = json.loads(proc.stdout)
        assert (result["action"] or "allowed") == want[name] == got[name], name
