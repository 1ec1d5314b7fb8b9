"""One pass over a mirrored registry: verify what it serves, then adopt what it ordered.

``sync`` fetches the registry's checkpoint and new entries (``registry``), folds the new
entries per order (only an order's latest version in the batch has a published rule
file), fetches the rules of each version to adopt and checks them against the logged
digest, and only then writes, in ONE transaction: each adoption (``order-adopted``) or
withdrawal (``adoption-withdrawn``) with its entry on this installation's log, the
registry's new leaf hashes and its checkpoint. Any failure before the write changes
nothing but the mirror's status line (and, for a refusal, the evidence kept).

The mirror enforces nothing the registry's verified log does not show: it adopts only
order versions from entries that hash to a checkpoint signed by the registry's key, with
rules that hash to the digest those entries commit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, select, update

from clearwall.errors import MirrorError
from clearwall.federation import records
from clearwall.federation.records import Mirror
from clearwall.federation.registry import REFUSED, Held, RegistryClient, Update
from clearwall.ledger import entries
from clearwall.ledger.merkle import leaf_hash
from clearwall.model import OrderStatus
from clearwall.policy.model import Authority, RuleSpec
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import utcnow
from clearwall.store.service import PolicyService, append_entry, lock_log_head

log = logging.getLogger("clearwall.federation")


@dataclass
class Plan:
    """What a batch of registry entries asks of the mirror, per registry order: adopt
    its latest version (with its rules) or withdraw it."""

    adopt: list[tuple[int, entries.OrderVersion, list[RuleSpec]]] = field(default_factory=list)
    withdraw: list[tuple[int, entries.OrderEnd]] = field(default_factory=list)
    skipped: int = 0  # entries of other jurisdictions, or not clearwall entries


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one pass did: the registry size reached, and how many adoptions and
    withdrawals it logged."""

    mirror: Mirror
    size: int
    adopted: int
    withdrawn: int

    def line(self) -> str:
        """One line for the CLI and the job log."""
        return (
            f"{self.mirror.url}: at size {self.size}, {self.adopted} adoption(s), "
            f"{self.withdrawn} withdrawal(s)"
        )


def plan(
    mirror: Mirror,
    update_: Update,
    adopted: dict[int, tuple[int, int]],
    client: RegistryClient,
) -> Plan:
    """Fold the new entries per registry order and fetch each adopted version's rules."""
    latest: dict[int, tuple[int, entries.OrderVersion]] = {}
    ended: dict[int, tuple[int, entries.OrderEnd]] = {}
    out = Plan()
    for index, data in update_.new:
        try:
            event = entries.parse(data)
        except entries.EntryError as exc:
            log.info("registry %s entry %d is no clearwall entry: %s", mirror.url, index, exc)
            out.skipped += 1
            continue
        if isinstance(event, entries.OrderVersion):
            # An all-jurisdiction order is the registry operator's own security policy:
            # not an order of a jurisdiction's authority, so not adopted.
            code = event.authority.jurisdiction
            if event.order.all_jurisdictions or code not in mirror.jurisdictions:
                out.skipped += 1
                continue
            latest[event.order.id] = (index, event)
        elif isinstance(event, entries.OrderEnd):
            ended.setdefault(event.order_id, (index, event))
        else:
            out.skipped += 1
    for remote_id, (index, version) in sorted(latest.items(), key=lambda kv: kv[1][0]):
        if remote_id in ended:
            continue  # published and ended in one batch: withdrawn if adopted, else nothing
        rules = client.rules(remote_id, version.rules.digest, version.rules.count)
        out.adopt.append((index, version, rules))
    for remote_id, (index, end) in sorted(ended.items(), key=lambda kv: kv[1][0]):
        if remote_id in adopted:
            out.withdraw.append((index, end))
    return out


def _source(cp_origin: str, index: int, data: bytes, remote_order: int) -> entries.Source:
    return entries.Source(cp_origin, index, leaf_hash(data).hex(), remote_order)


def _local_authority(
    conn: Connection, mirror: Mirror, authority: Authority, local: str
) -> Authority:
    """The local authority standing for the registry's ``authority`` in ``local``:
    created on first adoption, kept equal to the registry's record."""
    t = schema.mirror_authorities
    row = conn.execute(
        select(t.c.authority_id).where(
            (t.c.mirror_id == mirror.id)
            & (t.c.remote_id == authority.id)
            & (t.c.local_code == local)
        )
    ).first()
    values = {
        "name": authority.name,
        "kind": authority.kind.value,
        "jurisdiction": local,
        "contacts": json.dumps(list(authority.contacts)),
    }
    a = schema.authorities
    if row is None:
        result = conn.execute(a.insert().values(**values, created_at=utcnow()))
        pk = result.inserted_primary_key
        assert pk is not None
        local_id = int(pk[0])
        conn.execute(
            t.insert().values(
                mirror_id=mirror.id, remote_id=authority.id, local_code=local, authority_id=local_id
            )
        )
    else:
        local_id = int(row[0])
        conn.execute(update(a).where(a.c.id == local_id).values(**values))
    return repo.get_authority(conn, local_id)


def _adopt(
    conn: Connection,
    mirror: Mirror,
    origin: str,
    index: int,
    data: bytes,
    version: entries.OrderVersion,
    rules: list[RuleSpec],
    adopted: dict[int, tuple[int, int]],
) -> None:
    """Write one adoption (new local order, or the adopted one brought equal to the
    registry's new version) with its ``order-adopted`` entry."""
    now = utcnow()
    remote = version.order
    local_code = mirror.jurisdictions[version.authority.jurisdiction]
    repo.get_jurisdiction(conn, local_code)  # NotFound: the mapping names no jurisdiction
    authority = _local_authority(conn, mirror, version.authority, local_code)
    rule_set = entries.RuleSet.of(rules)
    if rule_set != version.rules:  # registry.parse_rule_lines checked it; never enforce less
        raise MirrorError("invalid", f"order {remote.id}: rules do not match entry {index}")
    o = schema.orders
    fields = {
        "authority_id": authority.id,
        "title": remote.title,
        "legal_basis": remote.legal_basis,
        "reference": remote.reference,
        "category": remote.category.value,
        "action": remote.action.value,
        "issued": remote.issued,
        "effective_from": remote.effective_from,
        "expires": remote.expires,
        "document_url": remote.document_url,
        "all_jurisdictions": False,
        "rules_digest": rule_set.digest,
        "rule_count": rule_set.count,
    }
    known = adopted.get(remote.id)
    if known is not None:
        order_id = known[0]
        if repo.get_order(conn, order_id).status is not OrderStatus.ACTIVE:
            log.warning("mirror %s: order %d was withdrawn; not re-adopted", mirror.url, order_id)
            return
        conn.execute(update(o).where(o.c.id == order_id).values(**fields))
        conn.execute(delete(schema.rules).where(schema.rules.c.order_id == order_id))
    else:
        result = conn.execute(
            o.insert().values(
                **fields,
                status=OrderStatus.ACTIVE.value,
                created_at=now,
                log_index=None,
                revoked_reason=None,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        order_id = int(pk[0])
    PolicyService._insert_rules(conn, order_id, rules, None)
    order = repo.get_order(conn, order_id)
    event = entries.OrderAdopted(
        now, order, authority, rule_set, _source(origin, index, data, remote.id)
    )
    at = append_entry(conn, entries.encode(event), now)
    t = schema.mirror_orders
    if known is None:
        conn.execute(update(o).where(o.c.id == order_id).values(log_index=at))
        conn.execute(
            t.insert().values(
                mirror_id=mirror.id, remote_id=remote.id, order_id=order_id, remote_index=index
            )
        )
    else:
        conn.execute(
            update(t)
            .where((t.c.mirror_id == mirror.id) & (t.c.remote_id == remote.id))
            .values(remote_index=index)
        )
    adopted[remote.id] = (order_id, index)


def _withdraw(
    conn: Connection,
    mirror: Mirror,
    origin: str,
    index: int,
    data: bytes,
    end: entries.OrderEnd,
    adopted: dict[int, tuple[int, int]],
) -> bool:
    """Withdraw an adopted order the registry ended, with its ``adoption-withdrawn``
    entry; False when it is not in force here any more (expired here already)."""
    order_id, _ = adopted[end.order_id]
    if repo.get_order(conn, order_id).status is not OrderStatus.ACTIVE:
        return False
    what = "revoked" if isinstance(end, entries.OrderRevoked) else "ended"
    if isinstance(end, entries.OrderExpired):
        what = "expired"
    reason = f"{what} at the registry" + (
        f": {end.reason}" if not isinstance(end, entries.OrderExpired) else ""
    )
    now = utcnow()
    o = schema.orders
    conn.execute(
        update(o)
        .where(o.c.id == order_id)
        .values(status=OrderStatus.REVOKED.value, revoked_reason=reason)
    )
    event = entries.AdoptionWithdrawn(
        now, order_id, reason, _source(origin, index, data, end.order_id)
    )
    append_entry(conn, entries.encode(event), now)
    t = schema.mirror_orders
    conn.execute(
        update(t)
        .where((t.c.mirror_id == mirror.id) & (t.c.remote_id == end.order_id))
        .values(remote_index=index)
    )
    return True


def sync(service: PolicyService, mirror: Mirror) -> SyncReport:
    """One pass over ``mirror``'s registry (see the module docstring). MirrorError when
    the registry cannot be followed now; it is recorded on the mirror (status, reason,
    evidence for a refusal) and logged, and nothing else changed."""
    store = service.store
    client = RegistryClient(mirror.url, mirror.verifier(), mirror.policy())
    try:
        try:
            fetched = client.checkpoint(mirror.origin)
            if mirror.size and (fetched[1].size, fetched[1].root) == (mirror.size, mirror.root):
                # The tree verified last time, signed again: nothing new, and no need to
                # read every held leaf hash (the usual pass, every interval, is O(1)).
                records.record_ok(store, mirror.id)
                return SyncReport(mirror, mirror.size, 0, 0)
            held = Held(mirror.origin, records.leaves(store, mirror.id), mirror.checkpoint or "")
            update_ = client.update(held, fetched)
            with store.read() as conn:
                adopted = records.adopted(conn, mirror.id)
            work = plan(mirror, update_, adopted, client)
        finally:
            client.close()
        report = _write(service, mirror, held, update_, work, adopted)
    except MirrorError as exc:
        log.warning("mirror %s %s: %s", mirror.url, exc.status, exc)
        held_note = (mirror.checkpoint or "") if exc.status == REFUSED else ""
        records.record_failure(store, mirror.id, exc.status, str(exc), held_note, exc.offered)
        raise
    if report.adopted or report.withdrawn:
        log.info("mirror %s", report.line())
    return report


def _write(
    service: PolicyService,
    mirror: Mirror,
    held: Held,
    update_: Update,
    work: Plan,
    adopted: dict[int, tuple[int, int]],
) -> SyncReport:
    cp = update_.checkpoint
    data_at = dict(update_.new)
    count_adopted = count_withdrawn = 0
    m = schema.mirrors
    with service.store.write() as conn:
        lock_log_head(conn)
        # Another pass (a second gateway's jobs) may have gone further meanwhile: then
        # this one is stale and writes nothing.
        row = conn.execute(select(m.c.size).where(m.c.id == mirror.id)).first()
        if row is None or int(row[0]) != held.size:
            return SyncReport(mirror, int(row[0]) if row else held.size, 0, 0)
        # In the registry's order: an order published, then another's end, as it logged.
        ends = dict(work.withdraw)
        versions = {i: (v, r) for i, v, r in work.adopt}
        for index in sorted([*ends, *versions]):
            if index in versions:
                version, rules = versions[index]
                _adopt(conn, mirror, cp.origin, index, data_at[index], version, rules, adopted)
                count_adopted += 1
            elif _withdraw(conn, mirror, cp.origin, index, data_at[index], ends[index], adopted):
                count_withdrawn += 1
        if update_.new:
            conn.execute(
                schema.mirror_leaves.insert(),
                [
                    {"mirror_id": mirror.id, "idx": i, "leaf_hash": leaf_hash(d)}
                    for i, d in update_.new
                ],
            )
        size = max(held.size, cp.size)
        values: dict[str, object] = {
            "status": "ok",
            "last_error": "",
            "attempted_at": utcnow(),
            "origin": cp.origin,
        }
        if cp.size >= held.size:
            values.update(size=size, root_hash=cp.root, checkpoint=update_.note, synced_at=utcnow())
        conn.execute(update(m).where(m.c.id == mirror.id).values(**values))
    if count_adopted or count_withdrawn:
        service._committed()
    return SyncReport(mirror, size, count_adopted, count_withdrawn)


def sync_all(service: PolicyService) -> list[SyncReport | MirrorError]:
    """One pass over every mirror; a failing registry does not stop the others."""
    out: list[SyncReport | MirrorError] = []
    for mirror in records.list_all(service.store):
        try:
            out.append(sync(service, mirror))
        except MirrorError as exc:
            out.append(exc)
    return out
