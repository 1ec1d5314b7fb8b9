"""Read back the enforceable policy: only orders the log has published, with matching rules.

The log is the authority, not the tables: an order is enforced only when its publishing
entry lies inside the committed tree, no later entry revoked or expired it, its metadata
equals what the latest entry committed, and the Merkle digest recomputed over its stored
rules equals the digest on the log. Rules or orders changed behind the log's back are
therefore never enforced; each such order is named in a warning.

The same holds for jurisdictions: their client networks decide whose orders apply to a
client (and the gateway serves clients of every jurisdiction), so the jurisdictions in
force are the records their latest ``jurisdiction-set`` entries commit. A jurisdiction
stored but not on the log, or stored otherwise than logged, is named in a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from clearwall.errors import SnapshotError
from clearwall.ledger import entries
from clearwall.ledger.entries import EntryError, RuleSet
from clearwall.ledger.logstate import Finding, LogState, OrderCheck
from clearwall.ledger.state import Provenance, state_and_root
from clearwall.model import OrderStatus
from clearwall.policy.model import Authority, CompiledOrder, Jurisdiction, Order
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow

if TYPE_CHECKING:
    from clearwall.policy.snapshot import PolicySnapshot

log = logging.getLogger(__name__)


def policy_version(store: Store) -> int:
    """The policy version: the number of committed log entries (one cheap query)."""
    return store.log_size()


def _rows(conn: Any, size: int, since: int = 0) -> Any:
    """(index, data) of the entries ``since`` <= idx < ``size``, in index order."""
    t = schema.log_entries
    query = (
        select(t.c.idx, t.c.data)
        .where(t.c.idx >= since, t.c.idx < size)
        .order_by(t.c.idx)
        .execution_options(yield_per=10_000)
    )
    return ((int(idx), bytes(data)) for idx, data in conn.execute(query))


def _ignored(index: int, exc: EntryError) -> None:
    log.warning("log entry %d is not a clearwall entry (%s); ignored", index, exc)


def _logged_state(conn: Any, size: int, since: int = 0) -> LogState:
    """The fold of entries ``since <= idx < size`` (``ledger.logstate``); each entry that
    is not a clearwall entry is named in a warning and ignored."""
    state = LogState(since)
    state.extend(_rows(conn, size, since), _ignored)
    return state


def _jurisdictions_in_force(stored: list[Jurisdiction], state: LogState) -> list[Jurisdiction]:
    """The jurisdictions as the log commits them, by code; each stored one that is not
    on the log, or differs from its latest entry, is named in a warning."""
    for jurisdiction in stored:
        finding, index = state.check_jurisdiction(jurisdiction)
        if finding is Finding.NOT_ON_LOG:
            log.warning(
                "jurisdiction %r is not on the log (a store from before jurisdictions were "
                "logged: run `clearwall init` on it); its networks are not enforced",
                jurisdiction.code,
            )
        elif finding is not None:
            log.warning(
                "jurisdiction %r: stored record differs from log entry %d; the logged one "
                "is enforced",
                jurisdiction.code,
                index,
            )
    return state.jurisdictions_in_force()


_WARNINGS = {
    Finding.NOT_ON_LOG: "order %d is not on the log; not enforced",
    Finding.ENDED: "order %d is active in the store but revoked/expired on the log; not enforced",
    Finding.UNPUBLISHED: "order %d has no publishing entry on the log; not enforced",
    Finding.METADATA: "order %d: stored metadata differs from log entry %d; not enforced",
}


def _enforceable(
    conn: Any, order: Order, authority: Authority, state: LogState
) -> CompiledOrder | None:
    """The order with its rules when the log says it is in force as stored, else None
    (the reason, ``LogState.check_order``'s finding, is logged as a warning)."""
    read: list[RuleSet] = []
    rules = repo.rule_rows(conn, order.id)

    def rule_set() -> RuleSet:
        read.append(RuleSet.of(rules))
        return read[0]

    check = state.check_order(order, authority, rule_set)
    if check.finding is None:
        return CompiledOrder(order, authority, rules)
    _warn(order.id, check, read[0] if read else None)
    return None


def _warn(order_id: int, check: OrderCheck, found: RuleSet | None = None) -> None:
    """Say why an order is not enforced (``check.finding``; ``found``: the rule set its
    stored rules make, when that is the reason)."""
    if check.finding is Finding.RULES:
        assert check.logged is not None and found is not None
        log.warning(
            "order %d: its %d stored rules do not match the digest on log entry %d "
            "(%d rules); not enforced",
            order_id,
            found.count,
            check.index,
            check.logged.count,
        )
    elif check.finding is Finding.METADATA:
        log.warning(_WARNINGS[check.finding], order_id, check.index)
    elif check.finding is not None:
        log.warning(_WARNINGS[check.finding], order_id)


def _tree_size(conn: Any, limit: int | None) -> int:
    """The committed log size, or ``limit`` when that is smaller (the size of the log a
    gateway has published: it enforces nothing the public log does not show yet)."""
    size = int(conn.execute(select(schema.log_head.c.size)).scalar() or 0)
    return size if limit is None else min(size, limit)


def load_policy(
    store: Store, now: dt.datetime | None = None, *, size: int | None = None
) -> tuple[list[CompiledOrder], list[Jurisdiction], int]:
    """The enforceable orders, every jurisdiction, and the tree size they were read at.

    Orders past their sunset at ``now`` (default: the current time) are left out; orders
    that take effect later are kept (the snapshot checks effective dates per query).
    With ``size``, the policy as the log's first ``size`` entries state it.
    """
    compiled, jurisdictions, provenance = load_policy_proven(store, now=now, size=size)
    return compiled, jurisdictions, provenance.size


def load_policy_proven(
    store: Store, base_url: str = "", now: dt.datetime | None = None, *, size: int | None = None
) -> tuple[list[CompiledOrder], list[Jurisdiction], Provenance]:
    """``load_policy`` (at most ``size`` log entries of it), with the provenance of what
    it read (``ledger.state``): the log's root over the entries read, each enforced
    order's logged digest, the orders in force on the log it left out and why."""
    read = _read_policy(store, now, size)
    digests = {c.order.id: entries.rules_digest(c.rules) for c, _check in read.candidates}
    compiled = read.verified(digests)
    return compiled, read.jurisdictions, read.provenance(compiled, base_url)


@dataclass
class _ReadPolicy:
    """What a whole compile reads: the orders the log has in force as stored (their
    rules read, their digests not checked yet), the jurisdictions, the log's state."""

    candidates: list[tuple[CompiledOrder, OrderCheck]]  # with what the log commits of it
    jurisdictions: list[Jurisdiction]
    state: LogState
    root: str
    size: int
    expired: set[int]

    def verified(self, digests: dict[int, tuple[str, int]]) -> list[CompiledOrder]:
        """The candidates whose rules have their logged digests (``digests``: found);
        each other one is named in a warning."""
        out = []
        for compiled, check in self.candidates:
            digest, count = digests[compiled.order.id]
            found = RuleSet(count, digest)
            if found == check.logged:
                out.append(compiled)
            else:
                _warn(
                    compiled.order.id, OrderCheck(Finding.RULES, check.index, check.logged), found
                )
        return out

    def provenance(self, compiled: list[CompiledOrder], base_url: str) -> Provenance:
        """The provenance of a snapshot of ``compiled``."""
        logged = {c.order.id: check for c, check in self.candidates}
        in_force = self.state.orders_in_force()
        enforced = {c.order.id for c in compiled}
        orders = {}
        for oid in enforced:
            check = logged[oid]
            assert check.index is not None and check.logged is not None
            orders[oid] = (check.index, check.logged.digest, check.logged.count)
        return Provenance(
            size=self.size,
            root=self.root,
            base_url=base_url,
            orders=orders,
            expired=frozenset(self.expired & in_force),
            withheld=frozenset(in_force - enforced - self.expired),
            jurisdictions={code: idx for code, (idx, _j) in self.state.jurisdictions.items()},
        )


def _read_policy(store: Store, now: dt.datetime | None, limit: int | None) -> _ReadPolicy:
    """What a whole compile reads, at the first ``limit`` log entries at most."""
    at = now or utcnow()
    candidates: list[tuple[CompiledOrder, OrderCheck]] = []
    expired: set[int] = set()
    with store.read() as conn:
        size = _tree_size(conn, limit)
        state, root = state_and_root(_rows(conn, size), size, _ignored)
        jurisdictions = _jurisdictions_in_force(repo.list_jurisdictions(conn), state)
        authorities = {a.id: a for a in repo.list_authorities(conn)}
        for order in repo.list_orders(conn, status=OrderStatus.ACTIVE):
            if order.expires is not None and order.expires <= at:
                expired.add(order.id)
                continue
            authority = authorities[order.authority_id]
            check = state.check_stored(order, authority)
            if check.finding is None:
                rules = repo.rule_rows(conn, order.id)
                candidates.append((CompiledOrder(order, authority, rules), check))
            else:
                _warn(order.id, check)
    return _ReadPolicy(candidates, jurisdictions, state, root, size, expired)


@dataclass(frozen=True)
class PolicyChange:
    """What the log says changed since a tree size: the orders to mask in a snapshot
    compiled at ``since`` and the enforceable orders that replace them."""

    since: int
    size: int
    changed: frozenset[int]  # every order a log entry in [since, size) publishes or ends
    orders: list[CompiledOrder]  # the enforceable ones among them, as they now stand
    jurisdictions: list[Jurisdiction]  # every jurisdiction in force at ``size``


def load_changes(
    store: Store,
    since: int,
    now: dt.datetime | None = None,
    base_jurisdictions: list[Jurisdiction] | None = None,
    *,
    size: int | None = None,
) -> PolicyChange:
    """The policy change between tree size ``since`` and the store's current one (or
    ``size``, when smaller).

    An order's state on the log is decided by its own entries: an order no entry in
    [since, size) names is as it was at ``since``; one that is named has its latest
    publishing or amending entry there, or was revoked or expired there. Only the named
    orders' rules are read and checked against their digests. Jurisdictions likewise:
    ``base_jurisdictions`` (those in force at ``since``, as the base snapshot holds
    them) with the records entries in [since, size) set; without it the whole log is
    read for them. Raises ValueError when the log is shorter than ``since`` (not the
    log the base was compiled from).
    """
    at = now or utcnow()
    compiled: list[CompiledOrder] = []
    with store.read() as conn:
        size = _tree_size(conn, size)
        if size < since:
            raise ValueError(f"the log has {size} entries, fewer than the base's {since}")
        state = _logged_state(conn, size, since)
        named = state.named()
        if base_jurisdictions is None:
            in_force = _logged_state(conn, size).jurisdictions
        else:
            in_force = {j.code: (-1, j) for j in base_jurisdictions}
            in_force.update(state.jurisdictions)
        jurisdictions = [in_force[code][1] for code in sorted(in_force)]
        authorities = {a.id: a for a in repo.list_authorities(conn)}
        for order_id in sorted(named):
            order = repo.get_order(conn, order_id)
            if order.status is not OrderStatus.ACTIVE:
                continue
            if order.expires is not None and order.expires <= at:
                continue
            enforced = _enforceable(conn, order, authorities[order.authority_id], state)
            if enforced is not None:
                compiled.append(enforced)
    return PolicyChange(since, size, named, compiled, jurisdictions)


def build_snapshot(
    store: Store, base_url: str = "", now: dt.datetime | None = None, *, size: int | None = None
) -> PolicySnapshot:
    """Compile the enforceable policy (at most ``size`` log entries of it) into a
    ``PolicySnapshot`` versioned by tree size."""
    return build_snapshot_proven(store, base_url, now, size=size)[0]


def build_snapshot_proven(
    store: Store,
    base_url: str = "",
    now: dt.datetime | None = None,
    parallel: bool = False,
    *,
    size: int | None = None,
    keytable_from: int | None = None,
) -> tuple[PolicySnapshot, Provenance]:
    """``build_snapshot`` (at most ``size`` log entries of it) and the provenance of what
    it compiled (``save_proven`` writes both, so that a later start can reuse the
    snapshot once checked against the log).

    With ``parallel`` (a single-threaded process that may fork: the gateway's compiler)
    the rules digests are computed in a forked process while the tables are built from
    every candidate order; the snapshot is used only if every digest matches its log
    entry, else it is built again from the orders that match. Same result, about the
    digests' time less (a few seconds with a million rules) when a second core is free;
    on a process pinned to one core the digests are computed in-process (``_cores``).
    ``keytable_from``: the names in a key table from that many name rules
    (``policy.compiler.build``), for a compile the gateway waits for.
    """
    from clearwall.policy.snapshot import PolicySnapshot

    read = _read_policy(store, now, size)

    def compile_(orders: list[CompiledOrder]) -> PolicySnapshot:
        return PolicySnapshot.compile(
            orders,
            read.jurisdictions,
            tree_size=read.size,
            base_url=base_url,
            keytable_from=keytable_from,
        )

    everything = [c for c, _check in read.candidates]
    snapshot: PolicySnapshot | None = None
    digests: dict[int, tuple[str, int]] | None = None
    if parallel and everything and _cores() > 1:
        collect = _digests_forked(everything)
        try:
            snapshot = compile_(everything)
        except SnapshotError:
            # A rule that cannot compile (a value with a newline, written behind the
            # log's back) in an order whose digest is not checked yet: compiled again
            # below from the orders that match, as the sequential compile would.
            snapshot = None
        digests = collect()
    if digests is None:
        digests = {c.order.id: entries.rules_digest(c.rules) for c in everything}
    compiled = read.verified(digests)
    if snapshot is None or len(compiled) != len(everything):
        snapshot = compile_(compiled)
    return snapshot, read.provenance(compiled, base_url)


def _cores() -> int:
    """How many CPUs this process may run on: with one (a gateway pinned to a core),
    the digests' fork only adds its copy-on-write faults (about 0.15 s for a million
    rules) to the same core's work, so they are computed in-process."""
    import os

    return len(os.sched_getaffinity(0))


def _digests_forked(
    orders: list[CompiledOrder],
) -> Callable[[], dict[int, tuple[str, int]] | None]:
    """Start computing the orders' rules digests in a forked child; returns the function
    that waits for them (None when the child failed: the caller computes them itself)."""
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: digests as JSON down the pipe, then exit at once
        status = 1
        try:
            os.close(read_end)
            found = {c.order.id: entries.rules_digest(c.rules) for c in orders}
            data = json.dumps({str(k): list(v) for k, v in found.items()}).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)

    def collect() -> dict[int, tuple[str, int]] | None:
        chunks = []
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
        os.close(read_end)
        _pid, status = os.waitpid(pid, 0)
        if status != 0:
            log.warning("the rules digest process failed (status %d); computing here", status)
            return None
        raw = json.loads(b"".join(chunks))
        return {int(k): (str(v[0]), int(v[1])) for k, v in raw.items()}

    return collect


def save_proven(snapshot: PolicySnapshot, provenance: Provenance, out: Path) -> None:
    """Save ``snapshot`` at ``out`` with its provenance and the digests of its files.

    The provenance is written last, once the files it names are in place: a directory
    without it (a crash between the two) is simply never reused."""
    import dataclasses
    import os

    from clearwall.ledger.state import PROVENANCE_FILE, file_digests

    snapshot.save(out)
    proven = dataclasses.replace(provenance, files=file_digests(out))
    tmp = out / f".{PROVENANCE_FILE}.tmp"
    with open(tmp, "wb") as dst:
        dst.write(proven.to_json())
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(tmp, out / PROVENANCE_FILE)


def build_overlay(
    store: Store,
    since: int,
    base_url: str = "",
    now: dt.datetime | None = None,
    base_jurisdictions: list[Jurisdiction] | None = None,
    *,
    size: int | None = None,
) -> tuple[PolicySnapshot, frozenset[int]]:
    """Compile the orders changed since tree size ``since`` into an overlay snapshot
    versioned by the current tree size (or ``size``), with the order ids it masks in the
    base (and every jurisdiction in force: see ``load_changes``)."""
    from clearwall.policy.snapshot import PolicySnapshot

    change = load_changes(store, since, now, base_jurisdictions, size=size)
    overlay = PolicySnapshot.compile(
        change.orders, change.jurisdictions, tree_size=change.size, base_url=base_url
    )
    return overlay, change.changed
