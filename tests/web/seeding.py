"""A small two-jurisdiction policy on a real database, with one API token per role."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from clearwall.config import BlockConfig, Config, DNSConfig, LedgerConfig
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.signing import create_key_file
from clearwall.model import Action, AuthorityKind, Category, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store.db import Store
from clearwall.store.reader import PolicyReader
from clearwall.store.service import PolicyService
from clearwall.store.tokens import TokenStore

BASE_URL = "http://portal.test"


@dataclass
class Seeded:
    """A store with two jurisdictions, their authorities, orders and one token per role."""

    url: str
    config: Config
    store: Store
    service: PolicyService
    tokens: dict[str, str]  # role name -> secret: operator, auditor, auth_a, auth_b
    authority_a: int
    authority_b: int
    operator_authority: int
    order_a: int
    order_b: int
    order_malware: int

    @property
    def reader(self) -> PolicyReader:
        """The store's records, read."""
        return PolicyReader(self.store)


def seed(url: str, tmp_path: Path) -> Seeded:
    """Create the schema, a signing key and a small two-jurisdiction policy."""
    store = Store(url)
    store.migrate()
    ledger = LedgerConfig(
        key_file=tmp_path / "ledger.key", tiles_dir=tmp_path / "log", origin="portal.test/log"
    )
    create_key_file(ledger.key_file, ledger.origin)
    config = Config(
        ledger=ledger,
        dns=DNSConfig(block=BlockConfig(public_url=BASE_URL, operator="Test Net")),
    )
    service = PolicyService(store)
    service.add_jurisdiction("aa", "Alphaland", ["10.1.0.0/16"])
    service.add_jurisdiction("bb", "Betaland", ["10.2.0.0/16"])
    court = service.add_authority(
        "Alphaland High Court", AuthorityKind.COURT, "aa", ["mailto:registry@court.aa.example"]
    )
    regulator = service.add_authority("Betaland Media Regulator", AuthorityKind.REGULATOR, "bb")
    cert = service.add_authority("Test Net Security Team", AuthorityKind.OPERATOR, "aa")
    start = dt.datetime(2025, 1, 15, tzinfo=dt.UTC)
    order_a = service.add_order(
        court.id,
        "Blocking of a copyright-infringing streaming site",
        "Copyright Act s. 97A",
        "HC-2025-0042",
        Category.COURT_ORDER,
        Action.SINKHOLE,
        [
            RuleSpec(RuleKind.SUBTREE, "blocked-a.example"),
            RuleSpec(RuleKind.EXACT, "also-a.example"),
        ],
        effective_from=start,
        document_url="https://court.aa.example/orders/0042.pdf",
    )
    order_b = service.add_order(
        regulator.id,
        "Unlicensed gambling operator",
        "Gambling Act art. 12",
        "REG-77",
        Category.REGULATORY,
        Action.NXDOMAIN,
        [RuleSpec(RuleKind.SUBTREE, "blocked-b.example")],
        effective_from=start,
    )
    malware = service.add_order(
        cert.id,
        "Malware distribution hosts",
        "Network security policy §3",
        "SEC-1",
        Category.MALWARE,
        Action.SINKHOLE,
        [RuleSpec(RuleKind.SUBTREE, "malware.example")],
        effective_from=start,
        all_jurisdictions=True,
    )
    TransparencyLog(store, ledger).sync()  # tiles and a signed checkpoint, as `serve` does
    made = TokenStore(store)
    tokens = {
        "operator": made.create("operator", label="ops")[0],
        "auditor": made.create("auditor", label="audit")[0],
        "auth_a": made.create("authority", court.id, "court")[0],
        "auth_b": made.create("authority", regulator.id, "regulator")[0],
    }
    return Seeded(
        url,
        config,
        store,
        service,
        tokens,
        court.id,
        regulator.id,
        cert.id,
        order_a.id,
        order_b.id,
        malware.id,
    )


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}
