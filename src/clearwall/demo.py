"""The demo policy: two fictional jurisdictions, three authorities, orders from real lists.

Everything about the demo's legal side is fictional (the republics, the court, the
regulator, the statutes and the references); the lists are real public lists read from the
shared data directory (``$CLEARWALL_DATA``, default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clearwall.errors import InvalidName, StoreError
from clearwall.formats import parse_file
from clearwall.model import Action, Category, OrderStatus, RuleKind
from clearwall.policy.model import Authority, RuleSpec
from clearwall.policy.names import normalize_name
from clearwall.store.reader import PolicyReader
from clearwall.store.service import PolicyService

REPO = Path(__file__).resolve().parents[2]
ProgressCallback = Callable[[int, int], None]


def data_dir(path: Path | None = None) -> Path:
    """The shared real-data directory: ``path``, else ``$CLEARWALL_DATA``, else the default."""
    chosen = path or Path(os.environ.get("CLEARWALL_DATA") or REPO.parent / "shared" / "data")
    if not chosen.is_dir():
        raise StoreError(f"demo data directory not found: {chosen} (set CLEARWALL_DATA)")
    return chosen


@dataclass
class DemoSummary:
    """What the demo created and which names show each behaviour."""

    orders: dict[str, int] = field(default_factory=dict)  # label -> order id
    rules: int = 0
    try_names: list[tuple[str, str]] = field(default_factory=list)  # (name, what to expect)

    def describe(self) -> str:
        """Human summary with names to try, printed by ``clearwall init --demo``."""
        lines = [f"demo policy: {len(self.orders)} orders, {self.rules} rules"]
        lines += [f"  order {oid}: {label}" for label, oid in self.orders.items()]
        lines.append("names to try (clearwall check NAME --client 127.0.0.1 | 127.77.0.1):")
        lines += [f"  {name:<40} {what}" for name, what in self.try_names]
        return "\n".join(lines)


def _sample(rules: list[RuleSpec]) -> str:
    """A short, readable blocked name from a list (for the names-to-try hint)."""
    names = [r.value for r in rules if not r.kind.is_allow and not r.kind.is_ip]
    return min(names, key=lambda n: (len(n) < 8, len(n), n))


def _list_rules(path: Path) -> list[RuleSpec]:
    result = parse_file(path)
    if not result.rules:
        raise StoreError(f"demo list {path} holds no rules")
    return result.rules


def _gambling_sites(root: Path) -> list[str]:
    """Hosts of the gambling (GMB) entries of every Citizen Lab test list, deduplicated."""
    hosts: dict[str, None] = {}
    for path in sorted((root / "citizenlab").glob("*.csv")):
        if path.name.startswith("00-"):
            continue
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("category_code") != "GMB":
                    continue
                host = urlsplit(row.get("url", "")).hostname or ""
                host = host.removeprefix("www.")
                try:
                    hosts[normalize_name(host)] = None
                except InvalidName:
                    continue
    if not hosts:
        raise StoreError(f"no gambling entries in {root / 'citizenlab'}")
    return list(hosts)


def install_demo(
    service: PolicyService, data: Path | None = None, progress: ProgressCallback | None = None
) -> DemoSummary:
    """Create the demo jurisdictions, authorities and orders.

    Idempotent and resumable: whatever an earlier (possibly interrupted) run created is
    kept and only what is missing is added, so running it twice logs nothing new.
    """
    root = data_dir(data)
    ransomware = _list_rules(root / "blocklistproject" / "ransomware.domains.txt")
    phishing = _list_rules(root / "blocklistproject" / "phishing.domains.txt")
    trackers = _list_rules(root / "hagezi" / "personal.adblock.txt")
    gambling = _gambling_sites(root)
    help_page = f"help.{gambling[0]}"

    reader = PolicyReader(service.store)
    known = {j.code for j in reader.jurisdictions()}
    if "xa" not in known:
        service.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8", "::1/128"])
    if "xb" not in known:
        service.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])

    def authority(name: str, kind: str, jurisdiction: str, contacts: list[str]) -> Authority:
        for existing in reader.authorities(jurisdiction):
            if existing.name == name:
                return existing
        return service.add_authority(name, kind, jurisdiction, contacts)

    court = authority(
        "High Court of Demo Republic A (fictional)",
        "court",
        "xa",
        ["mailto:registry@court.xa.example", "https://court.xa.example/"],
    )
    regulator = authority(
        "Demo Republic B Data Protection Authority (fictional)",
        "regulator",
        "xb",
        ["mailto:orders@dpa.xb.example", "tel:+999555010"],
    )
    operator = authority(
        "clearwall demo operator, security team",
        "operator",
        "xa",
        ["mailto:abuse@operator.example"],
    )
    summary = DemoSummary()
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def publish(label: str, issuer: int, rules: list[RuleSpec], **kw: Any) -> None:
        for existing in reader.orders(authority_id=issuer, status=OrderStatus.ACTIVE):
            if existing.reference == kw["reference"]:
                summary.orders[label] = existing.id
                summary.rules += len(rules)
                return
        order = service.add_order(
            issuer, rules=rules, effective_from=start, progress=progress, **kw
        )
        summary.orders[label] = order.id
        summary.rules += len(rules)

    publish(
        "ransomware domains, all jurisdictions (operator)",
        operator.id,
        ransomware,
        title="Ransomware infrastructure (The Block List Project)",
        legal_basis="Operator acceptable-use policy s. 4.2 (network security)",
        reference="SEC-2026-001",
        category=Category.MALWARE,
        action=Action.NXDOMAIN,
        all_jurisdictions=True,
        issued=dt.date(2025, 12, 20),
        document_url="https://operator.example/security/SEC-2026-001",
    )
    publish(
        "phishing domains, all jurisdictions (operator)",
        operator.id,
        phishing,
        title="Phishing sites (The Block List Project)",
        legal_basis="Operator acceptable-use policy s. 4.3 (fraud prevention)",
        reference="SEC-2026-002",
        category=Category.PHISHING,
        action=Action.NXDOMAIN,
        all_jurisdictions=True,
        issued=dt.date(2025, 12, 20),
        document_url="https://operator.example/security/SEC-2026-002",
    )
    court_rules = [RuleSpec(RuleKind.SUBTREE, host) for host in gambling]
    # The court keeps the operator's problem-gambling help pages reachable: an exception.
    court_rules.append(RuleSpec(RuleKind.ALLOW_SUBTREE, help_page))
    publish(
        "unlicensed gambling sites in xa, sinkholed to the 451 page (court)",
        court.id,
        court_rules,
        title="Order to block unlicensed online gambling services (fictional)",
        legal_basis="Demo Republic A Gambling Act 2019, s. 41(3) (fictional)",
        reference="HC-XA-2026-0117",
        category=Category.COURT_ORDER,
        action=Action.SINKHOLE,
        issued=dt.date(2025, 12, 15),
        expires=dt.datetime(2027, 12, 31, tzinfo=dt.UTC),
        document_url="https://court.xa.example/judgments/HC-XA-2026-0117",
    )
    publish(
        "tracking domains in xb (regulator)",
        regulator.id,
        trackers,
        title="Order on unlawful tracking of users (fictional)",
        legal_basis="Demo Republic B Personal Data Act, art. 58(2)(f) (fictional)",
        reference="DPA-XB-2026/004",
        category=Category.REGULATORY,
        action=Action.NXDOMAIN,
        issued=dt.date(2025, 12, 28),
        document_url="https://dpa.xb.example/decisions/2026-004",
    )
    summary.try_names = [
        (_sample(ransomware), "blocked everywhere: malware (operator)"),
        (_sample(phishing), "blocked everywhere: phishing (operator)"),
        (gambling[0], "blocked in xa (sinkhole, HTTP 451 page), allowed in xb"),
        (f"www.{gambling[0]}", "blocked in xa (subdomain of a court-ordered name)"),
        (help_page, "allowed in xa: the court's exception"),
        (_sample(trackers), "blocked in xb only (regulator)"),
        ("example.org", "allowed everywhere"),
    ]
    return summary
