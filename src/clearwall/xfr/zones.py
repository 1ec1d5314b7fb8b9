"""The RPZ zones of a policy: per jurisdiction and basis, triggers stating the matcher's verdicts.

RPZ and clearwall's matcher decide differently. The matcher weighs every matching rule
of every applicable order (``docs/matcher.md``: specificity, exceptions beat blocks of
the same or lower specificity, the action of the most specific block). A resolver
takes, in the first zone that has a match, the one trigger for the query name (the
exact owner, else the longest ``*.`` wildcard above it), and Unbound even stops at the
closest owner it has. So the zones here do not copy rules; they state verdicts:

1. For each name ``d`` some applicable rule lists, the matcher's verdict for ``d``
   itself and for any name strictly below ``d`` with no deeper listed name (the verdict
   depends on nothing else) become the triggers ``d`` and ``*.d``. One zone holding all
   of them answers every name exactly as the matcher does.
2. A blocking trigger goes to the zone of its verdict's basis: ``censored`` (EDE 16,
   court and regulator orders) or ``blocked`` (EDE 15, the operator's orders; EDE 17
   subscriber filters too). Zones are loaded in ``BASES`` order, first match wins, so a
   trigger that a wildcard of an earlier zone covers is also copied into that zone,
   else the earlier, shallower wildcard would answer for it.
3. An allowing trigger is written (as ``rpz-passthru.``) only where a blocking wildcard
   covers it, into the earliest zone that has one.
4. Every name a blocking wildcard covers gets both its triggers in the zone that
   answers for it, so Unbound (which stops at the closest owner) and BIND, PowerDNS and
   Knot (which take the longest wildcard) read the zones alike; ``tests/xfr`` checks
   both readings against the matcher.

Response-IP rules go the same way with address prefixes (the longest prefix decides).
What RPZ cannot state exactly is counted in ``Zone.notes`` (written as zone comments).

A change touches few names, so ``ZoneSet`` keeps every jurisdiction's zones across
policy versions and recomputes only the names a change can affect: those the changed
orders list (before and after), those of orders that took effect or expired meanwhile,
and every listed name below them (whose verdicts depend on their ancestors' rules).
Nothing else can change: a name's verdict depends only on its own and its ancestors'
rules, its place only on its verdicts and its ancestors' wildcards. ``jurisdiction_zones``
is the same computation from scratch; tests compare the two.
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from clearwall.formats.export import is_rpz_trigger_name
from clearwall.formats.rpz import rpz_ip_owner
from clearwall.model import Action, EDECode, OrderRef, OrderStatus, RuleKind
from clearwall.policy.compiler import OrderEntry, decode_rule, encode_rule, epoch, name_key
from clearwall.policy.model import ALL_JURISDICTIONS, CompiledOrder, Jurisdiction, RuleSpec
from clearwall.policy.snapshot import Hit, decide

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SUFFIX = "rpz.clearwall."
MAX_NAME = 255  # octets of a name in wire form (RFC 1035 section 2.3.4)


class Basis(enum.StrEnum):
    """Why a zone's triggers block: the label that names the zone, and its EDE code."""

    CENSORED = "censored"  # court and regulator orders: EDE 16 Censored
    BLOCKED = "blocked"  # the operator's security and policy orders: EDE 15 Blocked

    @property
    def ede(self) -> EDECode:
        """The EDE code a resolver should signal for this zone's blocks (RFC 8914)."""
        return EDECode.CENSORED if self is Basis.CENSORED else EDECode.BLOCKED


BASES: tuple[Basis, ...] = (Basis.CENSORED, Basis.BLOCKED)
"""The zones of a jurisdiction in the order a resolver must load them (first match wins)."""

Policy = Action | None
"""A trigger's policy: the block action, or None for an exception (``rpz-passthru.``)."""

_EXACT = frozenset({RuleKind.EXACT, RuleKind.ALLOW_EXACT})
_BELOW = frozenset({RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD})
_NEVER = math.inf  # the start of a removed order's slot: it never applies again


def basis_of(ede: EDECode | None) -> Basis:
    """The zone basis of a block by its EDE code: 16 is censored, the rest blocked."""
    return Basis.CENSORED if ede is EDECode.CENSORED else Basis.BLOCKED


def zone_name(jurisdiction: str, basis: Basis, suffix: str = DEFAULT_SUFFIX) -> str:
    """``JUR.BASIS.SUFFIX``, absolute: e.g. ``xa.censored.rpz.clearwall.``."""
    suffix = suffix.strip(".")
    return f"{jurisdiction}.{basis.value}.{suffix}." if suffix else f"{jurisdiction}.{basis}."


@dataclass(frozen=True, slots=True)
class _Rule:
    """One rule code, decoded once per index."""

    order: int
    allow: bool
    exact_only: bool
    below_only: bool
    action: Action | None  # the rule's own action; None: its order's


class RuleIndex:
    """Every rule of a set of orders by name and by network; orders can be put and
    dropped one by one (each keeps its slot, so rule codes stay valid)."""

    def __init__(self, orders: Iterable[CompiledOrder] = (), base_url: str = "") -> None:
        """Index the active ``orders`` (in force or not: that is decided per zone and
        time); revoked and expired ones are left out, as the snapshot compiler does."""
        self.base_url = base_url
        self.entries: list[OrderEntry] = []
        self.names: dict[str, tuple[int, ...]] = {}
        self.networks: dict[IPNetwork, tuple[int, ...]] = {}
        self._slots: dict[int, int] = {}  # order id -> entry index
        self._rules: dict[int, tuple[RuleSpec, ...]] = {}  # entry index -> its rules
        self._codes: dict[int, int] = {}  # one int object per distinct code
        self._decoded: dict[int, _Rule] = {}
        for compiled in orders:
            self.put(compiled)

    @property
    def rules(self) -> int:
        """How many rules the indexed orders hold."""
        return sum(len(r) for r in self._rules.values())

    def put(self, compiled: CompiledOrder) -> set[str]:
        """Index ``compiled`` (replacing its earlier version); the names whose rules changed."""
        touched = self.drop(compiled.order.id)
        o = compiled.order
        if o.status is not OrderStatus.ACTIVE:
            return touched
        slot = self._slots.get(o.id)
        end = math.inf if o.expires is None else epoch(o.expires)
        entry = OrderEntry(compiled.ref(self.base_url), epoch(o.effective_from), end)
        if slot is None:
            slot = self._slots[o.id] = len(self.entries)
            self.entries.append(entry)
        else:
            self.entries[slot] = entry
        self._rules[slot] = tuple(compiled.rules)
        names = self.names
        for rule in compiled.rules:
            code = encode_rule(slot, rule.kind, rule.action)
            code = self._codes.setdefault(code, code)
            if rule.kind.is_ip:
                net = ipaddress.ip_network(rule.value, strict=False)
                self.networks[net] = (*self.networks.get(net, ()), code)
            else:
                known = names.get(rule.value)
                names[rule.value] = (code,) if known is None else (*known, code)
                touched.add(rule.value)
        return touched

    def drop(self, order_id: int) -> set[str]:
        """Remove an order's rules (its slot stays, never applying); the names touched."""
        slot = self._slots.get(order_id)
        touched: set[str] = set()
        if slot is None or slot not in self._rules:
            return touched
        for rule in self._rules.pop(slot):
            if rule.kind.is_ip:
                net = ipaddress.ip_network(rule.value, strict=False)
                left = tuple(c for c in self.networks.get(net, ()) if self.decoded(c).order != slot)
                if left:
                    self.networks[net] = left
                else:
                    self.networks.pop(net, None)
                continue
            left = tuple(c for c in self.names.get(rule.value, ()) if self.decoded(c).order != slot)
            if left:
                self.names[rule.value] = left
            else:
                self.names.pop(rule.value, None)
            touched.add(rule.value)
        entry = self.entries[slot]
        self.entries[slot] = OrderEntry(entry.ref, _NEVER, _NEVER)
        return touched

    def jurisdictions(self, declared: Iterable[Jurisdiction] = ()) -> tuple[str, ...]:
        """The codes of ``declared`` jurisdictions and of every indexed order's, sorted
        ("*" is not a jurisdiction: its orders are in every jurisdiction's zones)."""
        codes = {j.code for j in declared}
        codes.update(self.entries[slot].ref.jurisdiction for slot in self._rules)
        codes.discard(ALL_JURISDICTIONS)
        return tuple(sorted(codes))

    def bounds(self) -> list[float]:
        """Every effective-from and expiry instant of the indexed orders, sorted."""
        return sorted({t for e in self.entries for t in (e.start, e.end) if t != math.inf})

    def orders_between(self, a: float, b: float) -> set[int]:
        """Slots of orders that take effect or expire in (min(a,b), max(a,b)]."""
        lo, hi = min(a, b), max(a, b)
        return {
            slot
            for slot in self._rules
            if lo < self.entries[slot].start <= hi or lo < self.entries[slot].end <= hi
        }

    def names_of(self, slots: Iterable[int]) -> set[str]:
        """The names the rules of these slots list."""
        return {r.value for s in slots for r in self._rules.get(s, ()) if not r.kind.is_ip}

    def decoded(self, code: int) -> _Rule:
        """The decoded form of a rule code."""
        found = self._decoded.get(code)
        if found is None:
            order, kind, override = decode_rule(code)
            found = self._decoded[code] = _Rule(
                order, kind.is_allow, kind in _EXACT, kind in _BELOW, override
            )
        return found


@dataclass(frozen=True)
class Zone:
    """One response policy zone: its name, and one policy per owner (relative names)."""

    name: str
    jurisdiction: str
    basis: Basis
    policies: Mapping[str, Policy]
    notes: tuple[str, ...] = ()

    def owners(self) -> list[str]:
        """The owners in the order they are written (sorted: AXFR and files are stable)."""
        return sorted(self.policies)


class Absent:
    """Stands for "no trigger at this owner" in a change."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent()
State = Policy | Absent
Change = dict[str, tuple[State, State]]
"""Owner -> (policy before, policy after) for every owner whose policy changed."""


# A flattened verdict: None when the names it covers are allowed, else (action, basis,
# the EDE code the matcher would send: it may differ from the zone's).
_Block = tuple[Action, Basis, EDECode]
_Flat = _Block | None


class _Decider:
    """``snapshot.decide`` for a list of hits, as a flattened verdict; one hit (the common
    case: a name listed once, nothing above it) is decided without building a Verdict."""

    def __init__(self, entries: list[OrderEntry]) -> None:
        self.entries = entries
        self._ede: dict[int, tuple[OrderRef, EDECode]] = {}
        self._flats: dict[tuple[Action, EDECode], _Block] = {}

    def flat(self, action: Action, ede: EDECode) -> _Block:
        """The (shared) flattened block for ``action`` signalled with ``ede``."""
        key = (action, ede)
        found = self._flats.get(key)
        if found is None:
            found = self._flats[key] = (action, basis_of(ede), ede)
        return found

    def __call__(self, hits: list[Hit]) -> _Flat:
        if not hits:
            return None
        if len(hits) == 1:
            _spec, index, allow, action, _text = hits[0]
            if allow:
                return None
            ref = self.entries[index].ref
            cached = self._ede.get(index)
            if cached is None or cached[0] is not ref:  # a slot's order can be replaced
                cached = self._ede[index] = (ref, ref.ede)
            return self.flat(action, cached[1])
        verdict = decide(hits, self.entries)
        if not verdict.blocked:
            return None
        assert verdict.action is not None
        return self.flat(verdict.action, verdict.ede or EDECode.BLOCKED)


def _ancestors(name: str) -> Iterator[str]:
    """The strict ancestors of a name, nearest first (``a.b.c`` -> ``b.c``, ``c``)."""
    start = name.find(".")
    while start >= 0:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


def _prefix_lengths(nets: Iterable[IPNetwork]) -> dict[int, list[int]]:
    """The prefix lengths present among ``nets``, per IP version, longest first."""
    lengths: dict[int, set[int]] = {4: set(), 6: set()}
    for net in nets:
        lengths[net.version].add(net.prefixlen)
    return {v: sorted(ls, reverse=True) for v, ls in lengths.items()}


def _supernets(net: IPNetwork, lengths: Mapping[int, list[int]]) -> Iterator[IPNetwork]:
    """``net`` itself, then its supernets at the prefix lengths that occur, longest first."""
    yield net
    for length in lengths[net.version]:
        if length < net.prefixlen:
            yield net.supernet(new_prefix=length)


class _Jurisdiction:
    """One jurisdiction's zones, kept up to date name by name."""

    def __init__(
        self, index: RuleIndex, code: str, names: Sequence[str], bases: Sequence[Basis]
    ) -> None:
        self.index = index
        self.code = code
        self.names = list(names)
        self.bases = tuple(bases)
        self.zone_of = {b: self.bases.index(b) if b in self.bases else 0 for b in Basis}
        zones = len(self.bases)
        self.rooms = [MAX_NAME - len(n) - 1 for n in self.names]  # an owner's own octets
        self.listed: dict[str, tuple[_Rule, ...]] = {}
        self.verdicts: dict[str, tuple[_Flat, _Flat]] = {}
        self.wild: list[set[str]] = [set() for _ in range(zones)]
        # The last labels of each zone's blocking wildcards: most names share none with
        # an earlier zone's (a security feed's .com names, a court's elsewhere) and are
        # placed without looking at their ancestors.
        self.tails: list[Counter[str]] = [Counter() for _ in range(zones)]
        self.owners: list[dict[str, Policy]] = [{} for _ in range(zones)]
        self.ip_flats: dict[str, _Flat] = {}  # rpz-ip owner -> its verdict
        self.omitted: set[str] = set()  # names ending in an RPZ trigger label
        self.long: list[set[str]] = [set() for _ in range(zones)]  # owners too long here
        self.decider = _Decider(index.entries)
        self.built = False  # whether update has run (the first one builds from nothing)

    # -- one name ------------------------------------------------------------------------

    def _verdict(self, name: str, rules: tuple[_Rule, ...]) -> tuple[_Flat, _Flat]:
        """The flattened verdicts for ``name`` itself and for the names below it."""
        entries = self.index.entries
        listed = self.listed
        above: list[Hit] = []
        dot = name.find(".")
        while dot >= 0:  # every strict ancestor (as _ancestors, without a generator)
            ancestor = name[dot + 1 :]
            dot = name.find(".", dot + 1)
            found = listed.get(ancestor)
            if found:
                labels = ancestor.count(".") + 1
                above.extend(
                    (2 * labels, r.order, r.allow, r.action or entries[r.order].ref.action, "")
                    for r in found
                    if not r.exact_only
                )
        labels = name.count(".") + 1
        at: list[Hit] = []
        below: list[Hit] = []
        for r in rules:
            hit = (
                2 * labels + r.exact_only,
                r.order,
                r.allow,
                r.action or entries[r.order].ref.action,
                "",
            )
            if not r.below_only:
                at.append(hit)
            if not r.exact_only:
                below.append(hit)
        return self.decider(at + above), self.decider(below + above)

    def _cover(self, name: str, before: int) -> int:
        """The first zone before ``before`` whose blocking wildcard covers ``name``."""
        tail = name.rsplit(".", 1)[-1]
        for z in range(before):
            if self.tails[z][tail] and any(a in self.wild[z] for a in _ancestors(name)):
                return z
        return -1

    def _set(self, z: int, owner: str, policy: Policy) -> None:
        if len(owner) + 1 > self.rooms[z]:
            self.long[z].add(owner)
            return
        self.owners[z][owner] = policy

    def _place(self, name: str) -> None:
        """Write ``name``'s triggers (steps 2 and 3 of the module docstring)."""
        at, below = self.verdicts[name]
        zones = len(self.owners)
        tail = name.rsplit(".", 1)[-1]
        # Only a zone with a blocking wildcard ending in this name's last label can cover
        # it: most names are placed without looking at their ancestors.
        first = next((z for z, t in enumerate(self.tails) if t[tail]), zones)
        for owner, flat in ((name, at), ("*." + name, below)):
            if flat is not None:
                home = self.zone_of[flat[1]]
                self._set(home, owner, flat[0])
                cover = self._cover(name, home) if first < home else -1
                if cover >= 0:
                    self._set(cover, owner, flat[0])
            elif first < zones:
                cover = self._cover(name, zones)
                if cover >= 0:
                    self._set(cover, owner, None)

    # -- a set of names ------------------------------------------------------------------

    def _applies(self, at: float) -> list[bool]:
        """Per order slot: whether it applies to this jurisdiction's clients at ``at``."""
        code = self.code
        return [
            e.start <= at < e.end and e.ref.jurisdiction in (code, ALL_JURISDICTIONS)
            for e in self.index.entries
        ]

    def update(self, names: Iterable[str], at: float) -> list[Change | None]:
        """Recompute ``names`` (every name whose triggers may have changed, with every
        listed name below each) and the response-IP triggers; what changed, per zone
        (None for the first update: the zones are new, take them whole)."""
        index = self.index
        applies = self._applies(at)
        decoded = index.decoded
        affected = names if isinstance(names, set | dict) else set(names)
        fresh, self.built = not self.built, True
        before: list[dict[str, Policy]] = [{} for _ in self.owners]
        old_owners = self.owners
        self.owners = [dict(zone) for zone in old_owners]  # the old versions stay intact
        listed, verdicts, zone_of = self.listed, self.verdicts, self.zone_of
        # Names share a few code tuples (one per set of orders listing them).
        filtered: dict[tuple[int, ...], tuple[_Rule, ...]] = {}
        for name in affected:
            codes = index.names.get(name, ())
            rules = filtered.get(codes)
            if rules is None:
                rules = filtered[codes] = tuple(r for r in map(decoded, codes) if applies[r.order])
            if not fresh:
                old = verdicts.pop(name, None)
                if old is not None and old[1] is not None:
                    z = zone_of[old[1][1]]
                    self.wild[z].discard(name)
                    self.tails[z][name.rsplit(".", 1)[-1]] -= 1
                self.omitted.discard(name)
            if rules and is_rpz_trigger_name(name):
                self.omitted.add(name)
                rules = ()
            if rules:
                listed[name] = rules
            elif not fresh:
                listed.pop(name, None)
        # Verdicts read only ``listed`` (the names and their ancestors), all updated now.
        for name in affected:
            rules = listed.get(name)
            if not rules:
                continue
            verdict = verdicts[name] = self._verdict(name, rules)
            if verdict[1] is not None:
                z = zone_of[verdict[1][1]]
                self.wild[z].add(name)
                self.tails[z][name.rsplit(".", 1)[-1]] += 1
        for name in affected:
            if not fresh:
                for z, zone in enumerate(self.owners):
                    for owner in (name, "*." + name):
                        self.long[z].discard(owner)
                        if owner in zone:
                            before[z].setdefault(owner, zone.pop(owner))
            if name in verdicts:
                self._place(name)
        self._update_networks(at, before)
        changes: list[Change | None] = []
        for z, zone in enumerate(self.owners):
            change: Change = {}
            for owner, policy in before[z].items():
                after = zone.get(owner, ABSENT)
                if after != policy:
                    change[owner] = (policy, after)
            if not fresh:
                for name in affected:
                    for owner in (name, "*." + name):
                        if owner in zone and owner not in before[z]:
                            change[owner] = (ABSENT, zone[owner])
                for owner in self._new_ip_owners.get(z, ()):
                    if owner not in before[z]:
                        change[owner] = (ABSENT, zone[owner])
            if not change and not fresh:
                self.owners[z] = old_owners[z]  # nothing changed: keep the old object
            changes.append(None if fresh else change)
        return changes

    def _update_networks(self, at: float, before: list[dict[str, Policy]]) -> None:
        """Recompute every response-IP trigger (they are few)."""
        index = self.index
        entries = index.entries
        code = self.code
        listed: dict[IPNetwork, tuple[_Rule, ...]] = {}
        for net, codes in index.networks.items():
            rules = tuple(
                r
                for r in map(index.decoded, codes)
                if entries[r.order].start <= at < entries[r.order].end
                and entries[r.order].ref.jurisdiction in (code, ALL_JURISDICTIONS)
            )
            if rules:
                listed[net] = rules
        lengths = _prefix_lengths(listed)
        flats: dict[IPNetwork, _Flat] = {}
        for net in listed:
            hits: list[Hit] = []
            for supernet in _supernets(net, lengths):
                for r in listed.get(supernet, ()):
                    action = r.action or entries[r.order].ref.action
                    hits.append((supernet.prefixlen, r.order, r.allow, action, ""))
            flats[net] = self.decider(hits)
        for owner in self.ip_flats:
            for z, zone in enumerate(self.owners):
                self.long[z].discard(owner)
                if owner in zone:
                    before[z].setdefault(owner, zone.pop(owner))
        blocking: list[set[IPNetwork]] = [set() for _ in self.owners]
        for net, flat in flats.items():
            if flat is not None:
                blocking[self.zone_of[flat[1]]].add(net)

        def cover(net: IPNetwork, until: int) -> int:
            """The first zone before ``until`` with a blocking prefix strictly above."""
            above = [s for s in _supernets(net, lengths) if s != net]
            for z in range(until):
                if blocking[z] and any(s in blocking[z] for s in above):
                    return z
            return -1

        self.ip_flats = {}
        self._new_ip_owners: dict[int, list[str]] = {}
        for net, flat in flats.items():
            owner = rpz_ip_owner(net)
            self.ip_flats[owner] = flat
            places: list[tuple[int, Policy]] = []
            if flat is not None:
                home = self.zone_of[flat[1]]
                places.append((home, flat[0]))
                z = cover(net, home)
                if z >= 0:
                    places.append((z, flat[0]))
            else:
                z = cover(net, len(self.owners))
                if z >= 0:
                    places.append((z, None))
            for z, policy in places:
                self._set(z, owner, policy)
                self._new_ip_owners.setdefault(z, []).append(owner)

    # -- the zones -----------------------------------------------------------------------

    def zones(self, with_notes: bool = False) -> list[Zone]:
        """The current zones (with ``with_notes``, what they cannot state, counted)."""
        return [
            Zone(
                self.names[z],
                self.code,
                basis,
                self.owners[z],
                tuple(self.notes(z)) if with_notes else (),
            )
            for z, basis in enumerate(self.bases)
        ]

    def _flat_of(self, owner: str) -> _Flat:
        if owner.endswith(".rpz-ip"):
            return self.ip_flats.get(owner)
        wildcard = owner.startswith("*.")
        pair = self.verdicts.get(owner[2:] if wildcard else owner)
        if pair is None:
            return None
        return pair[1] if wildcard else pair[0]

    def notes(self, z: int) -> list[str]:
        """What zone ``z`` cannot state exactly, counted (one pass over its triggers)."""
        basis = self.bases[z]
        policies = self.owners[z]
        copied = refused = filtered = passthru = 0
        for owner, policy in policies.items():
            if policy is None:
                passthru += not owner.endswith(".rpz-ip")
                continue
            refused += policy is Action.REFUSED
            flat = self._flat_of(owner)
            if flat is None:
                continue
            if self.zone_of[flat[1]] != z:
                copied += 1
            elif flat[2] is EDECode.FILTERED:
                filtered += 1
        notes: list[str] = []
        if copied and len(self.bases) > 1:
            notes.append(
                f"{copied} triggers decided by orders of another basis are served here "
                f"because a wildcard of this zone covers them: resolvers signal EDE "
                f"{basis.ede.value} for them"
            )
        if refused:
            notes.append(
                f"{refused} triggers are refused by the gateway; RPZ has no REFUSED: "
                "rpz-drop makes a resolver not answer"
            )
        if filtered:
            notes.append(
                f"{filtered} triggers come from subscriber-filter orders (EDE 17): resolvers "
                f"signal EDE {basis.ede.value}"
            )
        if passthru and any(f is not None for f in self.ip_flats.values()):
            notes.append(
                f"{passthru} name exceptions (rpz-passthru) also exempt their names from "
                "response-IP triggers on RPZ resolvers; the gateway checks answer addresses "
                "of every allowed name"
            )
        if self.omitted and z == 0:
            notes.append(
                f"{len(self.omitted)} names ending in an RPZ trigger label (rpz-ip, "
                "rpz-nsdname, ...) cannot be QNAME triggers: omitted"
            )
        if self.long[z]:
            notes.append(f"{len(self.long[z])} triggers too long for the zone name: omitted")
        return notes


def jurisdiction_zones(
    index: RuleIndex,
    jurisdiction: str,
    at: float,
    suffix: str = DEFAULT_SUFFIX,
    bases: Sequence[Basis] = BASES,
    names: Sequence[str] | None = None,
) -> list[Zone]:
    """The zones of ``jurisdiction`` at time ``at`` (epoch seconds), computed from
    scratch, one per basis in load order, with their notes; with a single basis, one
    zone holding every trigger. ``names`` overrides the zone names."""
    zone_names = list(names) if names else [zone_name(jurisdiction, b, suffix) for b in bases]
    state = _Jurisdiction(index, jurisdiction, zone_names, bases)
    state.update(set(index.names), at)
    return state.zones(with_notes=True)


def all_zones(
    index: RuleIndex,
    jurisdictions: Iterable[Jurisdiction],
    at: float,
    suffix: str = DEFAULT_SUFFIX,
) -> list[Zone]:
    """Every jurisdiction's zones (``BASES`` order), jurisdictions sorted by code."""
    out: list[Zone] = []
    for code in index.jurisdictions(jurisdictions):
        out.extend(jurisdiction_zones(index, code, at, suffix))
    return out


class ZoneSet:
    """Every jurisdiction's zones across policy versions, recomputing only what a change
    can affect (see the module docstring)."""

    def __init__(self, suffix: str = DEFAULT_SUFFIX, base_url: str = "") -> None:
        """Zones named under ``suffix``; order links in citations under ``base_url``."""
        self.suffix = suffix
        self.index = RuleIndex(base_url=base_url)
        self.at: float | None = None
        self._keys: list[str] = []  # name_key of every indexed name, sorted
        self._orders: dict[int, CompiledOrder] = {}
        self._states: dict[str, _Jurisdiction] = {}

    def _below(self, names: Iterable[str]) -> set[str]:
        """``names`` and every indexed name below any of them."""
        keys = self._keys
        out: set[str] = set()
        for name in names:
            key = name_key(name)
            i = bisect.bisect_left(keys, key)
            while i < len(keys) and keys[i].startswith(key):
                out.add(keys[i][::-1][1:])
                i += 1
            out.add(name)
        return out

    def update(
        self, orders: Sequence[CompiledOrder], jurisdictions: Iterable[Jurisdiction], at: float
    ) -> dict[str, tuple[Zone, Change | None]]:
        """Bring the zones to ``orders`` at ``at``. An order is recomputed when it is not
        the very object the last update had (the feed keeps unchanged orders' objects).
        Per zone name: the zone and what changed in it (None for a zone computed anew,
        e.g. of a jurisdiction that was gone: compare it whole)."""
        index = self.index
        wanted = {o.order.id: o for o in orders}
        touched: set[str] = set()
        for order_id in set(self._orders) - set(wanted):
            touched |= index.drop(order_id)
            del self._orders[order_id]
        for order_id, compiled in wanted.items():
            if self._orders.get(order_id) is not compiled:
                touched |= index.put(compiled)
                self._orders[order_id] = compiled
        if self.at is not None and at != self.at:
            touched |= index.names_of(index.orders_between(self.at, at))
        keys = self._keys
        if len(touched) > len(index.names) // 4:  # a big change: sorting anew is cheaper
            keys[:] = sorted(name_key(n) for n in index.names)
        else:
            present = index.names
            for name in touched:
                key = name_key(name)
                i = bisect.bisect_left(keys, key)
                found = i < len(keys) and keys[i] == key
                if name in present and not found:
                    keys.insert(i, key)
                elif name not in present and found:
                    del keys[i]
        big = len(touched) > len(index.names) // 4
        affected = set(index.names) | touched if big else self._below(touched)
        codes = index.jurisdictions(jurisdictions)
        out: dict[str, tuple[Zone, Change | None]] = {}
        for code in codes:
            state = self._states.get(code)
            if state is None:
                names = [zone_name(code, b, self.suffix) for b in BASES]
                state = self._states[code] = _Jurisdiction(index, code, names, BASES)
                changes = state.update(set(index.names), at)
            else:
                changes = state.update(affected, at)
            for zone, change in zip(state.zones(), changes, strict=True):
                out[zone.name] = (zone, change)
        for gone in set(self._states) - set(codes):
            del self._states[gone]
        self.at = at
        return out

    def notes(self, zone: str) -> tuple[str, ...]:
        """What a zone cannot state exactly, counted."""
        for state in self._states.values():
            if zone in state.names:
                return tuple(state.notes(state.names.index(zone)))
        return ()
