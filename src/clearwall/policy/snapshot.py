"""The compiled, immutable policy snapshot the data plane asks per query and per answer.

See ``docs/matcher.md`` for the exact precedence rules; ``policy.reference`` states the
same rules as a slow, obviously-correct implementation the tests compare against.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytricia

from clearwall.errors import SnapshotError
from clearwall.model import (
    ACTION_PRECEDENCE,
    ALLOWED,
    Action,
    Citation,
    Decision,
    OrderRef,
    RuleKind,
    Verdict,
)
from clearwall.policy import snapshotfile
from clearwall.policy._nameindex import Memo, NameIndex, NameMatcher
from clearwall.policy.compiler import (
    OrderEntry,
    Tables,
    build,
    decode_rule,
    key_name,
)
from clearwall.policy.model import ALL_JURISDICTIONS, CompiledOrder, Jurisdiction, RuleSpec

# Memoized verdicts per view are a cache, not an index: past this many entries a memo is
# emptied rather than allowed to grow with the number of distinct names ever hit. An
# entry costs about 400 bytes (the citation names the matched rule), so a full memo is
# about 13 MiB; blocked names in real traffic are a far smaller working set.
MEMO_LIMIT = 1 << 15

_EXACT_KINDS = frozenset({RuleKind.EXACT, RuleKind.ALLOW_EXACT})
_BELOW_ONLY_KINDS = frozenset({RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD})
_ACTION_RANK = {action: rank for rank, action in enumerate(ACTION_PRECEDENCE)}

# One matching rule while a verdict is worked out: (specificity, order index, is an
# exception, effective action, citation text).
Hit = tuple[int, int, bool, Action, str]


class _Rule(NamedTuple):
    """A rule code decoded once at load, with what matching needs precomputed."""

    order: int  # index into the snapshot's orders
    kind: RuleKind
    override: Action | None
    allow: bool
    exact_only: bool  # exact kinds: match only the name itself, one point more specific
    below_only: bool  # wildcard kinds: match only names strictly below
    head: str  # the citation text is head + name + tail, as RuleSpec.describe() has it
    tail: str


def _decode(code: int) -> _Rule:
    index, kind, override = decode_rule(code)
    return _Rule(
        index,
        kind,
        override,
        kind.is_allow,
        kind in _EXACT_KINDS,
        kind in _BELOW_ONLY_KINDS,
        f"{kind.value} ",
        f" ({override.value})" if override else "",
    )


class _View:
    """What one client jurisdiction sees at the current time: the orders that apply to it,
    and the verdicts already worked out, keyed by the deepest listed name matched (in
    ``exact`` when the query is that name, in ``below`` when it lies below it).

    The name memos are ``Memo`` maps, slotted by the name index's fingerprints so that
    the C fast path reads them without hashing or allocating; keys are still compared as
    strings. Only ``_resolve_name`` writes a name memo, after the trie confirmed the key:
    a fingerprint false positive can look a memo up but never find a wrong entry there.
    """

    __slots__ = ("applies", "below", "exact", "ip")

    def __init__(self, index: NameIndex) -> None:
        self.applies = bytearray()
        self.exact = Memo(index)
        self.below = Memo(index)
        self.ip: dict[str, Verdict] = {}

    def reset(self, applies: bytearray) -> None:
        """Switch to a new set of applicable orders and forget the memoized verdicts."""
        self.applies = applies
        self.exact.clear()
        self.below.clear()
        self.ip.clear()


def decide(hits: list[Hit], orders: list[OrderEntry]) -> Verdict:
    """The verdict for a list of matching rules (all from applicable orders)."""
    if len(hits) == 1:  # the common case: one listed name, one order
        _spec, index, allow, action, text = hits[0]
        if allow:
            return ALLOWED
        return Verdict(Decision.BLOCK, action, (Citation(orders[index].ref, text),))
    blocks = [h for h in hits if not h[2]]
    if not blocks:
        return ALLOWED
    best_block = max(h[0] for h in blocks)
    best_allow = max((h[0] for h in hits if h[2]), default=-1)
    if best_allow >= best_block:
        cited = [h for h in hits if h[2] and h[0] >= best_block]
        return Verdict(Decision.ALLOW, None, _citations(cited, orders))
    action = min((h[3] for h in blocks if h[0] == best_block), key=_ACTION_RANK.__getitem__)
    cited = [h for h in blocks if h[0] > best_allow]
    return Verdict(Decision.BLOCK, action, _citations(cited, orders))


def _citations(hits: list[Hit], orders: list[OrderEntry]) -> tuple[Citation, ...]:
    """One citation per order, its most specific rule; most specific first, then order id."""
    best: dict[int, tuple[int, str]] = {}
    for spec, index, _allow, _action, text in hits:
        seen = best.get(index)
        if seen is None or (-spec, text) < (-seen[0], seen[1]):
            best[index] = (spec, text)
    ranked = sorted(
        best.items(), key=lambda item: (-item[1][0], orders[item[0]].ref.id, item[1][1])
    )
    return tuple(Citation(orders[index].ref, text) for index, (_spec, text) in ranked)


class PolicySnapshot(NameMatcher):
    """An immutable compiled policy: names in a marisa trie or a key table (with a
    fingerprint index in front of either), addresses in prefix trees.

    Build one with ``compile`` or ``load``; ask it with ``match``/``match_ip``. The only
    mutable state is a verdict memo per jurisdiction, which never changes an answer.

    ``match`` is inherited from ``NameMatcher`` (C, ``_nameindex.c``): it answers names
    the index rules out and memoized verdicts, and calls ``_match_slow`` for the rest.
    """

    def __init__(self, tables: Tables, masked: frozenset[int] = frozenset()) -> None:
        """Serve from ``tables`` (use ``compile`` or ``load`` rather than this).

        Orders whose id is in ``masked`` are carried but never apply: a layered policy
        (``policy.layered``) masks the orders its overlay replaces or ends.
        """
        self._tables = tables
        self.masked = masked
        self.tree_size: int = tables.tree_size
        self.version: str = tables.version
        self.valid_until: float | None = tables.valid_until
        self._orders = tables.orders
        self._groups = [tuple(_decode(c) for c in g) for g in tables.groups]
        self._key_groups = tables.key_groups
        self._trie = tables.trie
        self._index = NameIndex(tables.index_image, tables.index_key)
        self._prefixes = tables.trie.prefixes
        self._key_id = tables.trie.key_id
        self._refs = tuple(o.ref for o in tables.orders if o.ref.id not in masked)

        self._ip4 = pytricia.PyTricia(32)
        self._ip6 = pytricia.PyTricia(128)
        for cidr, code in tables.ip_rules:
            tree = self._ip6 if ":" in cidr else self._ip4
            group: tuple[int, ...] = tree.get(cidr) if tree.has_key(cidr) else ()
            tree[cidr] = (*group, code)
        self._nets4 = pytricia.PyTricia(32)
        self._nets6 = pytricia.PyTricia(128)
        for jurisdiction in tables.jurisdictions:
            for network in jurisdiction.networks:
                nets = self._nets6 if network.version == 6 else self._nets4
                nets[str(network)] = jurisdiction.code

        codes = {j.code for j in tables.jurisdictions}
        codes.update(o.ref.jurisdiction for o in tables.orders)
        codes.discard(ALL_JURISDICTIONS)
        self._codes = tuple(sorted(codes))
        self._views = {code: _View(self._index) for code in self._codes}
        self._star = _View(self._index)  # clients of other jurisdictions: only "*" orders
        self._bounds = sorted({t for o in tables.orders for t in (o.start, o.end) if t != math.inf})
        # The C fast path reads the same memos (views reset them in place) and keeps
        # the interval they hold for in _lo/_hi, empty until the first query.
        super().__init__(
            self._index,
            {code: (view.exact, view.below) for code, view in self._views.items()},
            (self._star.exact, self._star.below),
            ALLOWED,
        )

    # -- building and persistence -------------------------------------------------------

    @classmethod
    def compile(
        cls,
        orders: Iterable[CompiledOrder],
        jurisdictions: Iterable[Jurisdiction],
        tree_size: int = 0,
        base_url: str = "",
        progress: Callable[[int], None] | None = None,
        keytable_from: int | None = None,
    ) -> PolicySnapshot:
        """Compile orders (only active ones are kept) and jurisdictions into a snapshot.

        Each order's ``rules`` is read once and may be a generator; ``progress`` receives
        the running count of rules read. ``keytable_from``: see ``compiler.build``.
        """
        return cls(
            build(orders, jurisdictions, tree_size, base_url, progress, keytable_from=keytable_from)
        )

    def save(self, path: Path, extra: dict[str, bytes] | None = None) -> None:
        """Write the snapshot as a directory at ``path``, atomically, with the ``extra``
        files (name -> content) beside its own (``snapshotfile.save``)."""
        snapshotfile.save(self._tables, path, extra)

    @classmethod
    def load(cls, path: Path, masked: frozenset[int] = frozenset()) -> PolicySnapshot:
        """Map a saved snapshot (``snapshotfile.load_tables``): its files stay pages that
        every process loading them shares. ``masked``: see the constructor."""
        tables = snapshotfile.load_tables(path)
        try:
            return cls(tables, masked)
        except ValueError as exc:  # a damaged index (bad header or size)
            raise SnapshotError(f"cannot load policy snapshot {path}: {exc}") from exc

    # -- the data plane -----------------------------------------------------------------

    # match(name, jurisdiction, now=None) is NameMatcher.match, in C. In Python it reads:
    #
    #     try:
    #         cut = self._index.deepest(name)  # the deepest listed suffix, by fingerprint
    #     except ValueError:                   # not ASCII or too long: not indexed
    #         return self._match_slow(name, jurisdiction, now)
    #     if cut < 0:
    #         return ALLOWED                   # fingerprints have no false negatives
    #     now = time.time() if now is None else now
    #     if not self._lo <= now < self._hi:
    #         return self._match_slow(name, jurisdiction, now)
    #     view = self._views.get(jurisdiction, self._star)
    #     verdict = view.below.get(name[cut:]) if cut else view.exact.get(name)
    #     if verdict is None:                  # not worked out yet (or a collision)
    #         verdict = self._match_slow(name, jurisdiction, now)
    #     return verdict
    #
    # A fingerprint collision makes ``cut`` point at a suffix that is not listed; memo
    # entries are only ever written under listed names (by _resolve_name, after the trie
    # confirmed them), so the lookup misses and the trie decides.

    def _match_slow(self, name: str, jurisdiction: str, now: float | None) -> Verdict:
        """``match`` for what its fast path cannot prove: a memo miss, a time outside the
        current interval, a name the index does not cover."""
        if now is None:
            now = time.time()
        if not self._lo <= now < self._hi:
            self._enter(now)
        return self._resolve_name(name, self._views.get(jurisdiction, self._star))

    def _resolve_name(self, name: str, view: _View) -> Verdict:
        """The authoritative verdict: the trie says which listed names the query is or
        lies below. Memoized under the deepest of them, which is what the name index
        finds for the next query (unless a collision makes it point deeper, to a name
        under which nothing is ever memoized)."""
        key = ("." + name)[::-1]
        found = self._prefixes(key)
        if not found:  # the name index matched a fingerprint, not a listed name
            return ALLOWED
        deepest = found[-1]
        exact = len(deepest) == len(key)
        memo = view.exact if exact else view.below
        listed = name[len(key) - len(deepest) :]  # the deepest listed name, as a suffix
        verdict = memo.get(listed)
        if verdict is None:
            verdict = self._decide_name(key, found, view)
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[listed] = verdict
        return verdict

    def _decide_name(self, key: str, found: list[str], view: _View) -> Verdict:
        return decide(self._found_hits(key, found, view, 0), self._orders)

    def _found_hits(self, key: str, found: list[str], view: _View, offset: int) -> list[Hit]:
        """The applicable rules of the listed names ``found`` for the query ``key``, with
        order indexes shifted by ``offset``."""
        applies = view.applies
        orders = self._orders
        hits: list[Hit] = []
        for prefix in found:
            exact = len(prefix) == len(key)
            labels = prefix.count(".")
            name = key_name(prefix)
            for rule in self._groups[self._key_groups[self._key_id(prefix)]]:
                if not applies[rule.order] or (rule.below_only if exact else rule.exact_only):
                    continue
                hits.append(
                    (
                        2 * labels + rule.exact_only,
                        rule.order + offset,
                        rule.allow,
                        rule.override or orders[rule.order].ref.action,
                        rule.head + name + rule.tail,
                    )
                )
        return hits

    def name_hits(self, name: str, jurisdiction: str, now: float, offset: int = 0) -> list[Hit]:
        """Every rule of an applicable order that matches ``name`` for clients of
        ``jurisdiction`` at ``now``, unmemoized, order indexes shifted by ``offset``:
        what a layered policy merges across its layers before deciding."""
        if not self._lo <= now < self._hi:
            self._enter(now)
        key = ("." + name)[::-1]
        found = self._prefixes(key)
        if not found:
            return []
        return self._found_hits(key, found, self._views.get(jurisdiction, self._star), offset)

    def ip_hits(self, address: str, jurisdiction: str, now: float, offset: int = 0) -> list[Hit]:
        """``name_hits`` for an answer address (ValueError when it is not one)."""
        tree = self._ip6 if ":" in address else self._ip4
        deepest = tree.get_key(address)
        if deepest is None:
            return []
        if not self._lo <= now < self._hi:
            self._enter(now)
        return self._tree_hits(tree, deepest, self._views.get(jurisdiction, self._star), offset)

    def may_list(self, name: str) -> bool:
        """Whether ``name`` or one of its ancestors may carry rules here: False is certain
        (the name index has no false negatives), True may be a fingerprint collision or a
        name the index does not cover."""
        try:
            return bool(self._index.deepest(name) >= 0)
        except ValueError:
            return True

    def has_ip_rule(self, address: str) -> bool:
        """Whether any response-IP rule (of any order, in force or not) covers ``address``."""
        tree = self._ip6 if ":" in address else self._ip4
        return tree.get_key(address) is not None

    def next_change(self, now: float) -> float:
        """The first instant after ``now`` at which an order carried takes effect or
        expires, so verdicts may change with time alone; ``math.inf`` if none."""
        return segment(self._bounds, now)[1]

    @property
    def bounds(self) -> list[float]:
        """Every effective-from and expiry instant of the orders carried, sorted."""
        return self._bounds

    @property
    def entries(self) -> list[OrderEntry]:
        """The orders carried, masked ones included, in rule-code index order."""
        return self._orders

    def match_ip(self, address: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """The verdict for an answer address (v4 or v6 text) for a client of
        ``jurisdiction``; raises ValueError when ``address`` is not an IP address."""
        tree = self._ip6 if ":" in address else self._ip4
        deepest = tree.get_key(address)
        if deepest is None:
            return ALLOWED
        if now is None:
            now = time.time()
        if not self._lo <= now < self._hi:
            self._enter(now)
        view = self._views.get(jurisdiction, self._star)
        verdict = view.ip.get(deepest)
        if verdict is None:
            verdict = self._resolve_ip(tree, deepest, view)
            if len(view.ip) >= MEMO_LIMIT:
                view.ip.clear()
            view.ip[deepest] = verdict
        return verdict

    def _resolve_ip(self, tree: Any, deepest: str, view: _View) -> Verdict:
        return decide(self._tree_hits(tree, deepest, view, 0), self._orders)

    def _tree_hits(self, tree: Any, deepest: str, view: _View, offset: int) -> list[Hit]:
        applies = view.applies
        orders = self._orders
        hits: list[Hit] = []
        cidr: str | None = deepest
        while cidr is not None:
            length = int(cidr.rsplit("/", 1)[1])
            for code in tree[cidr]:
                rule = _decode(code)
                if applies[rule.order]:
                    action = rule.override or orders[rule.order].ref.action
                    hits.append(
                        (
                            length,
                            rule.order + offset,
                            rule.allow,
                            action,
                            rule.head + cidr + rule.tail,
                        )
                    )
            cidr = tree.parent(cidr)
        return hits

    def _enter(self, now: float) -> None:
        """Recompute which orders apply to each view for the time segment holding ``now``."""
        lo, hi = segment(self._bounds, now)
        masked = self.masked
        live = [o.start <= now < o.end and o.ref.id not in masked for o in self._orders]
        for code, view in (*self._views.items(), (ALL_JURISDICTIONS, self._star)):
            view.reset(
                bytearray(
                    is_live and o.ref.jurisdiction in (code, ALL_JURISDICTIONS)
                    for is_live, o in zip(live, self._orders, strict=True)
                )
            )
        self._lo, self._hi = lo, hi

    def jurisdiction_of(self, client_ip: str) -> str | None:
        """The jurisdiction whose networks hold ``client_ip`` most specifically, if any.

        IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, as dual-stack sockets report
        IPv4 clients) are looked up as the IPv4 address they carry.
        """
        if client_ip.startswith("::ffff:") and "." in client_ip:
            client_ip = client_ip[7:]
        nets = self._nets6 if ":" in client_ip else self._nets4
        try:
            code: str | None = nets.get(client_ip)
        except ValueError:
            return None
        return code

    # -- inspection and export ----------------------------------------------------------

    def jurisdictions(self) -> tuple[str, ...]:
        """Codes of every jurisdiction the snapshot knows (declared or named by an order)."""
        return self._codes

    def orders(self) -> tuple[OrderRef, ...]:
        """Every order the snapshot carries (active status; in force or not at a given time)."""
        return self._refs

    def __len__(self) -> int:
        """The number of distinct names that carry rules."""
        return len(self._trie)

    def rules_for(
        self, jurisdiction: str, now: float | None = None
    ) -> Iterator[tuple[RuleSpec, OrderRef]]:
        """Every rule in force for clients of ``jurisdiction`` at ``now``, with its order.

        This is the jurisdiction's effective policy for export (RPZ, domains, hosts): its
        own orders and the all-jurisdiction ones, allow rules included. Names come in trie
        order (a key table's: key order), then response-IP rules by CIDR.
        """
        moment = time.time() if now is None else now
        applies = [
            o.start <= moment < o.end
            and o.ref.jurisdiction in (jurisdiction, ALL_JURISDICTIONS)
            and o.ref.id not in self.masked
            for o in self._orders
        ]
        if not any(applies):
            return
        for key, kid in self._trie.iteritems():
            name = key_name(key)
            for index, kind, override, *_ in self._groups[self._key_groups[kid]]:
                if applies[index]:
                    yield RuleSpec(kind, name, override), self._orders[index].ref
        for cidr, code in self._tables.ip_rules:
            index, kind, override = decode_rule(code)
            if applies[index]:
                yield RuleSpec(kind, cidr, override), self._orders[index].ref


def segment(bounds: list[float], now: float) -> tuple[float, float]:
    """The stretch of time [lo, hi) between sorted order ``bounds`` (effective-from and
    expiry instants) that holds ``now``; infinite where no bound closes it."""
    at = bisect.bisect_right(bounds, now)
    lo = bounds[at - 1] if at else -math.inf
    hi = bounds[at] if at < len(bounds) else math.inf
    return lo, hi
