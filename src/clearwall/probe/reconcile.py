"""Pure reconciliation of what a network does with what its log proves it should do.

Only proofs count: an order is *published* when a per-name proof bundle, verified
against a checkpoint signed by the key the auditor trusts, shows it active for the name
in the jurisdiction. Text inside a DNS answer or a block page (an SDE naming an order,
a ``blocked-by`` link) is evidence of a claim, never of publication.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clearwall.errors import VerificationError
from clearwall.ledger import entries
from clearwall.ledger.checkpoint import parse_checkpoint
from clearwall.ledger.entries import EntryError
from clearwall.ledger.nameproof import verify_bundle
from clearwall.ledger.note import split_note
from clearwall.ledger.signing import Verifier
from clearwall.policy.model import ALL_JURISDICTIONS
from clearwall.probe.classify import Classification, Kind

DEFAULT_PROPAGATION_DELAY = dt.timedelta(seconds=300)


class Verdict(enum.StrEnum):
    """How one target's measured treatment compares with the published log."""

    PUBLISHED_AND_ENFORCED = "published-and-enforced"
    ENFORCED_BUT_UNPUBLISHED = "enforced-but-unpublished"
    PUBLISHED_BUT_NOT_ENFORCED = "published-but-not-enforced"
    CONSISTENT_ALLOW = "consistent-allow"
    INCONCLUSIVE = "inconclusive"  # the measurement could not tell blocked from down
    UNVERIFIED = "unverified"  # no verified proof for the name: nothing to reconcile with


@dataclass(frozen=True, slots=True)
class PublishedOrder:
    """An order the log proves covers a name: id, scope and the period it is in force."""

    id: int
    jurisdiction: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    title: str = ""
    category: str = ""
    action: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "id": self.id,
            "jurisdiction": self.jurisdiction,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "title": self.title,
            "category": self.category,
            "action": self.action,
        }


@dataclass(frozen=True, slots=True)
class NameProof:
    """What the log proves about one name in one jurisdiction, after verification.

    ``verified`` is True only when the bundle's proofs and the checkpoint signature all
    checked out; ``orders`` then lists every order whose rules cover the name (active or
    not: the reconciler applies the dates). ``failure`` says why verification failed.
    """

    name: str
    jurisdiction: str
    verified: bool
    orders: tuple[PublishedOrder, ...] = ()
    checkpoint: str = ""
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The reconciliation verdict for one target with the orders and facts behind it."""

    verdict: Verdict
    orders: tuple[int, ...] = ()
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "verdict": self.verdict.value,
            "orders": list(self.orders),
            "evidence": list(self.evidence),
        }


def _applies(order: PublishedOrder, jurisdiction: str) -> bool:
    return order.jurisdiction in (jurisdiction, "*")


def must_be_enforced(order: PublishedOrder, at: dt.datetime, delay: dt.timedelta) -> bool:
    """True when the order has been in force for longer than the propagation delay."""
    if order.start is not None and at < order.start + delay:
        return False
    return order.end is None or at < order.end


def may_be_enforced(order: PublishedOrder, at: dt.datetime, delay: dt.timedelta) -> bool:
    """True when a block is justified: the order started, and ended less than ``delay`` ago."""
    if order.start is not None and at < order.start:
        return False
    return order.end is None or at < order.end + delay


def claimed_orders(classification: Classification, sde: dict[str, Any] | None) -> tuple[str, ...]:
    """Order references an answer claims (SDE justification/organization), for evidence."""
    if not sde:
        return ()
    claims = []
    for key in ("j", "o", "order", "r"):
        value = sde.get(key)
        if isinstance(value, str | int) and str(value):
            claims.append(f"{key}={value}")
    return tuple(claims)


_ORDER_LINK = re.compile(r"/orders/(\d+)\b")


def claimed_order_ids(claims: Sequence[str]) -> tuple[int, ...]:
    """Order ids an answer's claims link to (``…/orders/<id>`` in an SDE justification)."""
    return tuple(sorted({int(m) for c in claims for m in _ORDER_LINK.findall(c)}))


def reconcile(
    classification: Classification,
    proof: NameProof | None,
    *,
    at: dt.datetime,
    delay: dt.timedelta = DEFAULT_PROPAGATION_DELAY,
    claims: Sequence[str] = (),
) -> Reconciliation:
    """Compare a target's classification with the verified log (pure; table-tested)."""
    if proof is None:
        return Reconciliation(Verdict.UNVERIFIED, (), ("no log to reconcile with",))
    if not proof.verified:
        return Reconciliation(
            Verdict.UNVERIFIED, (), (f"proof for {proof.name} did not verify: {proof.failure}",)
        )
    scoped = [o for o in proof.orders if _applies(o, proof.jurisdiction)]
    justified = tuple(o.id for o in scoped if may_be_enforced(o, at, delay))
    required = tuple(o.id for o in scoped if must_be_enforced(o, at, delay))
    facts: list[str] = [f"log checkpoint {proof.checkpoint}"] if proof.checkpoint else []
    if claims:
        facts.append("the answer claims " + ", ".join(claims) + " (a claim, not a proof)")
        proven = {o.id for o in scoped}
        for cited in claimed_order_ids(claims):
            if cited not in proven:
                facts.append(
                    f"the answer cites order {cited}, which the verified proof does not show "
                    f"covering {proof.name} in {proof.jurisdiction}"
                )
    if classification.kind is Kind.UNDETERMINED or classification.kind is Kind.DOWN:
        facts.append(f"measurement is {classification.kind.value}")
        if classification.kind is Kind.DOWN and not required:
            return Reconciliation(Verdict.CONSISTENT_ALLOW, justified, tuple(facts))
        return Reconciliation(Verdict.INCONCLUSIVE, justified, tuple(facts))
    if classification.kind.blocked:
        if justified:
            facts.append("the log proves order(s) " + ", ".join(map(str, justified)) + " in force")
            return Reconciliation(Verdict.PUBLISHED_AND_ENFORCED, justified, tuple(facts))
        if classification.weak:
            # A page that merely differs from the control's is not proof of a block:
            # accusing a network of unpublished blocking needs more than a changed title.
            facts.append("the page differs from the control's, which dynamic sites also do")
            return Reconciliation(Verdict.INCONCLUSIVE, (), tuple(facts))
        facts.append(
            f"blocked ({classification.kind.value}) but the log proves no order in force "
            f"for {proof.name} in {proof.jurisdiction}"
        )
        return Reconciliation(Verdict.ENFORCED_BUT_UNPUBLISHED, (), tuple(facts))
    if required:
        facts.append(
            "accessible although the log proves order(s) "
            + ", ".join(map(str, required))
            + f" in force for longer than {int(delay.total_seconds())} s"
        )
        return Reconciliation(Verdict.PUBLISHED_BUT_NOT_ENFORCED, required, tuple(facts))
    if justified:
        facts.append("order(s) within the propagation delay: " + ", ".join(map(str, justified)))
    return Reconciliation(Verdict.CONSISTENT_ALLOW, (), tuple(facts))


def name_proof_from_bundle(
    bundle: Mapping[str, Any], verifier: Verifier, name: str, jurisdiction: str
) -> NameProof:
    """Verify a ``clearwall-name-proof/v1`` bundle and keep what reconciliation needs.

    Verification is the ledger's own (checkpoint signature, entry inclusion, rule-set
    membership and non-membership, conclusion); on top, the bundle must be about the
    name and jurisdiction that were asked for, so a proof for another name cannot stand
    in. Never raises: a bundle that fails is a NameProof with ``verified=False``.
    """
    try:
        conclusion = verify_bundle(bundle, verifier)
        if bundle["name"] != name:
            raise VerificationError(f"bundle is about {bundle['name']!r}, not {name!r}")
        if str(bundle["jurisdiction"]).lower() != jurisdiction.lower():
            raise VerificationError(f"bundle is for jurisdiction {bundle['jurisdiction']!r}")
        checkpoint = parse_checkpoint(split_note(str(bundle["checkpoint"]))[0])
        blocking = {int(i) for i in conclusion.get("blocked_by", ())}
        orders = []
        for item in bundle["orders"]:
            if int(item["order"]) not in blocking:
                continue
            version = entries.parse(str(item["entry"]["data"]).encode("utf-8"))
            if not isinstance(version, entries.OrderVersion):
                raise VerificationError(f"entry {item['entry']['index']} publishes no order")
            meta = version.order
            orders.append(
                PublishedOrder(
                    id=meta.id,
                    jurisdiction=ALL_JURISDICTIONS if meta.all_jurisdictions else jurisdiction,
                    start=meta.effective_from,
                    end=meta.expires,
                    title=meta.title,
                    category=meta.category.value,
                    action=meta.action.value,
                )
            )
    except (VerificationError, EntryError, KeyError, TypeError, ValueError) as exc:
        return NameProof(name, jurisdiction, False, failure=str(exc))
    return NameProof(
        name,
        jurisdiction,
        True,
        tuple(orders),
        f"{checkpoint.origin}/{checkpoint.size}/{checkpoint.root.hex()[:16]}",
    )
