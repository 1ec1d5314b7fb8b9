"""``ledger verify``'s check of adoptions: each cites a registry entry that says so.

Every ``order-adopted`` and ``adoption-withdrawn`` entry of this installation's log names
a registry's origin, an entry index and that entry's leaf hash. For each registry this
installation mirrors (matched by origin), the registry's log is fetched and verified
(signature, every entry against the signed root), and each citation checked: the entry
exists, hashes to the cited leaf hash, and states what the adoption claims (the same
order, metadata and rule set; or that order's end). A registry that cannot be reached
is reported as not checked, never as checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import inspect

from clearwall.errors import ClearwallError
from clearwall.federation import records
from clearwall.federation.registry import Held, RegistryClient
from clearwall.ledger import entries
from clearwall.ledger.merkle import leaf_hash
from clearwall.policy.model import Order
from clearwall.store.db import Store

Citation = entries.OrderAdopted | entries.AdoptionWithdrawn


@dataclass
class AdoptionReport:
    """What the check found: problems (a citation the registry's log contradicts),
    registries not reached, and how many citations were checked."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    checked: int = 0
    registries: int = 0


def citations(store: Store) -> list[tuple[int, Citation]]:
    """Every adoption and withdrawal on the store's log, with its index."""
    out: list[tuple[int, Citation]] = []
    for entry in store.log_entries():
        if entries.family(entry.data) not in (
            entries.Family.ORDER_VERSION,
            entries.Family.ORDER_END,
        ):
            continue
        try:
            event = entries.parse(entry.data)
        except entries.EntryError:
            continue
        if isinstance(event, entries.OrderAdopted | entries.AdoptionWithdrawn):
            out.append((entry.index, event))
    return out


def _same_order(local: Order, remote: Order) -> bool:
    """The adopted order states the registry's order (its own id and authority aside)."""
    keys = (
        "title",
        "legal_basis",
        "reference",
        "category",
        "action",
        "issued",
        "effective_from",
        "expires",
        "document_url",
    )
    return all(getattr(local, k) == getattr(remote, k) for k in keys)


def check_citation(index: int, cited: Citation, registry_entries: list[bytes]) -> str | None:
    """Why the registry's entries contradict the citation at local entry ``index``
    (None: they bear it out)."""
    source = cited.source
    where = f"entry {index} cites {source.origin} entry {source.index}"
    if source.index >= len(registry_entries):
        return f"{where}, beyond the registry's log of {len(registry_entries)} entries"
    data = registry_entries[source.index]
    if leaf_hash(data).hex() != source.leaf_hash:
        return f"{where} with leaf hash {source.leaf_hash}, but that entry hashes otherwise"
    try:
        event = entries.parse(data)
    except entries.EntryError as exc:
        return f"{where}, which is no clearwall entry ({exc})"
    if isinstance(cited, entries.OrderAdopted):
        if not isinstance(event, entries.OrderVersion) or event.order.id != source.order_id:
            return f"{where}, which publishes no version of order {source.order_id}"
        if event.rules != cited.rules:
            return f"{where}, whose rule set {event.rules.digest} is not the adopted one"
        if not _same_order(cited.order, event.order):
            return f"{where}, whose order metadata differs from the adopted order's"
        return None
    if not isinstance(event, entries.OrderEnd) or event.order_id != source.order_id:
        return f"{where}, which does not end order {source.order_id}"
    return None


def check_adoptions(store: Store) -> AdoptionReport:
    """Check every citation on the store's log against its registry's log (see above)."""
    report = AdoptionReport()
    cited = citations(store)
    if not cited:
        return report
    mirrors = records.list_all(store) if inspect(store.engine).has_table("mirrors") else []
    by_origin = {m.origin: m for m in mirrors if m.origin}
    for origin in sorted({c.source.origin for _, c in cited}):
        mine = [(i, c) for i, c in cited if c.source.origin == origin]
        mirror = by_origin.get(origin)
        if mirror is None:
            report.unchecked.append(
                f"{len(mine)} adoption entr(ies) cite {origin}, which no mirror follows now"
            )
            continue
        client = RegistryClient(mirror.url, mirror.verifier(), mirror.policy())
        try:
            # From an empty held state: every entry, checked against the signed root.
            registry_entries = [d for _, d in client.update(Held(origin)).new]
        except ClearwallError as exc:
            report.unchecked.append(
                f"{len(mine)} adoption entr(ies) citing {origin} not checked: {mirror.url}: {exc}"
            )
            continue
        finally:
            client.close()
        report.registries += 1
        for index, citation in mine:
            problem = check_citation(index, citation, registry_entries)
            if problem is not None:
                report.problems.append(problem)
            report.checked += 1
    return report
