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
"""

from __future__ import annotations

import bisect
import enum
import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clearwall.formats.export import is_rpz_trigger_name
from clearwall.formats.rpz import rpz_ip_owner
from clearwall.model import Action, EDECode, OrderStatus, RuleKind
from clearwall.policy.compiler import OrderEntry, decode_rule, encode_rule, epoch
from clearwall.policy.model import ALL_JURISDICTIONS, CompiledOrder, Jurisdiction
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
    """Every rule of a set of orders by name and by network, built once per policy version
    and shared by every jurisdiction's zones."""

    def __init__(self, orders: Iterable[CompiledOrder], base_url: str = "") -> None:
        """Index the active ``orders`` (in force or not: that is decided per zone and
        time); revoked and expired ones are left out, as the snapshot compiler does."""
        self.entries: list[OrderEntry] = []
        self.names: dict[str, tuple[int, ...]] = {}
        self.networks: dict[IPNetwork, tuple[int, ...]] = {}
        self.rules = 0
        codes: dict[int, int] = {}  # one int object per distinct code
        names = self.names
        for compiled in orders:
            o = compiled.order
            if o.status is not OrderStatus.ACTIVE:
                continue
            index = len(self.entries)
            end = math.inf if o.expires is None else epoch(o.expires)
            self.entries.append(OrderEntry(compiled.ref(base_url), epoch(o.effective_from), end))
            for rule in compiled.rules:
                self.rules += 1
                code = encode_rule(index, rule.kind, rule.action)
                code = codes.setdefault(code, code)
                if rule.kind.is_ip:
                    net = ipaddress.ip_network(rule.value, strict=False)
                    self.networks[net] = (*self.networks.get(net, ()), code)
                else:
                    known = names.get(rule.value)
                    names[rule.value] = (code,) if known is None else (*known, code)
        self._decoded: dict[int, _Rule] = {}
        for code in codes:
            order, kind, override = decode_rule(code)
            self._decoded[code] = _Rule(
                order, kind.is_allow, kind in _EXACT, kind in _BELOW, override
            )

    def jurisdictions(self, declared: Iterable[Jurisdiction] = ()) -> tuple[str, ...]:
        """The codes of ``declared`` jurisdictions and of every order's, sorted ("*" is not
        a jurisdiction: its orders are in every jurisdiction's zones)."""
        codes = {j.code for j in declared}
        codes.update(e.ref.jurisdiction for e in self.entries)
        codes.discard(ALL_JURISDICTIONS)
        return tuple(sorted(codes))

    def bounds(self) -> list[float]:
        """Every effective-from and expiry instant of the indexed orders, sorted."""
        return sorted({t for e in self.entries for t in (e.start, e.end) if t != math.inf})

    def decoded(self, code: int) -> _Rule:
        """The decoded form of a rule code."""
        return self._decoded[code]


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


# A flattened verdict: None when the names it covers are allowed, else (action, basis,
# the EDE code the matcher would send: it may differ from the zone's).
_Block = tuple[Action, Basis, EDECode]
_Flat = _Block | None


class _Decider:
    """``snapshot.decide`` for a list of hits, as a flattened verdict; one hit (the common
    case: a name listed once, nothing above it) is decided without building a Verdict."""

    def __init__(self, entries: list[OrderEntry]) -> None:
        self.entries = entries
        self.ede = [e.ref.ede for e in entries]
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
            return None if allow else self.flat(action, self.ede[index])
        verdict = decide(hits, self.entries)
        if not verdict.blocked:
            return None
        assert verdict.action is not None
        return self.flat(verdict.action, verdict.ede or EDECode.BLOCKED)


@dataclass
class _Placement:
    """Triggers per zone while they are placed, and what could not be stated exactly."""

    zones: int
    owners: list[dict[str, Policy]] = field(default_factory=list)
    copied: list[int] = field(default_factory=list)  # blocks of another basis, per zone

    def __post_init__(self) -> None:
        self.owners = [{} for _ in range(self.zones)]
        self.copied = [0] * self.zones


def _ancestors(name: str) -> Iterable[str]:
    """The strict ancestors of a name, nearest first (``a.b.c`` -> ``b.c``, ``c``)."""
    start = name.find(".")
    while start >= 0:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


def _name_verdicts(
    index: RuleIndex, listed: Mapping[str, tuple[_Rule, ...]]
) -> dict[str, tuple[_Flat, _Flat]]:
    """For each listed name: the flattened verdict for the name itself and below it."""
    entries = index.entries
    flat = _Decider(entries)
    out: dict[str, tuple[_Flat, _Flat]] = {}
    for name, rules in listed.items():
        above: list[Hit] = []
        for ancestor in _ancestors(name):
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
        out[name] = (flat(at + above), flat(below + above))
    return out


def _place_names(
    verdicts: Mapping[str, tuple[_Flat, _Flat]], zone_of: Mapping[Basis, int], zones: int
) -> _Placement:
    """Triggers for name verdicts, per zone (steps 2 and 3 of the module docstring)."""
    placed = _Placement(zones)
    owners = placed.owners
    # Names with a blocking wildcard, per zone: what covers the names below them.
    wild: list[set[str]] = [set() for _ in range(zones)]
    for name, (_at, below) in verdicts.items():
        if below is not None:
            wild[zone_of[below[1]]].add(name)

    # The last labels of each zone's wildcards: most names share none with an earlier
    # zone's (a security feed's .com names, a court's names elsewhere) and are done fast.
    tails = [{w.rsplit(".", 1)[-1] for w in names} for names in wild]

    def earliest_cover(name: str, before: int) -> int:
        """The first zone before ``before`` whose blocking wildcard covers ``name``."""
        tail = name.rsplit(".", 1)[-1]
        for z in range(before):
            if tail in tails[z] and any(a in wild[z] for a in _ancestors(name)):
                return z
        return -1

    for name, (at, below) in verdicts.items():
        for owner, flat in ((name, at), ("*." + name, below)):
            if flat is not None:
                home = zone_of[flat[1]]
                owners[home][owner] = flat[0]
                cover = earliest_cover(name, home)
                if cover >= 0:
                    owners[cover][owner] = flat[0]
                    placed.copied[cover] += 1
            else:
                cover = earliest_cover(name, zones)
                if cover >= 0:
                    owners[cover][owner] = None
    return placed


def _prefix_lengths(nets: Iterable[IPNetwork]) -> dict[int, list[int]]:
    """The prefix lengths present among ``nets``, per IP version, longest first."""
    lengths: dict[int, set[int]] = {4: set(), 6: set()}
    for net in nets:
        lengths[net.version].add(net.prefixlen)
    return {v: sorted(ls, reverse=True) for v, ls in lengths.items()}


def _supernets(net: IPNetwork, lengths: Mapping[int, list[int]]) -> Iterable[IPNetwork]:
    """``net`` itself, then its supernets at the prefix lengths that occur, longest first."""
    yield net
    for length in lengths[net.version]:
        if length < net.prefixlen:
            yield net.supernet(new_prefix=length)


def _ip_verdicts(
    index: RuleIndex, listed: Mapping[IPNetwork, tuple[_Rule, ...]]
) -> dict[IPNetwork, _Flat]:
    """For each listed network: the flattened verdict for addresses whose longest listed
    prefix it is (every rule of it and of its listed supernets, as ``match_ip``)."""
    entries = index.entries
    flat = _Decider(entries)
    lengths = _prefix_lengths(listed)
    out: dict[IPNetwork, _Flat] = {}
    for net in listed:
        hits: list[Hit] = []
        for supernet in _supernets(net, lengths):
            for r in listed.get(supernet, ()):
                action = r.action or entries[r.order].ref.action
                hits.append((supernet.prefixlen, r.order, r.allow, action, ""))
        out[net] = flat(hits)
    return out


def _place_networks(
    verdicts: Mapping[IPNetwork, _Flat], zone_of: Mapping[Basis, int], zones: int
) -> _Placement:
    """Triggers for address verdicts, per zone (the longest prefix wins in every
    resolver, so no closure is needed)."""
    placed = _Placement(zones)
    lengths = _prefix_lengths(verdicts)
    blocking: list[set[IPNetwork]] = [set() for _ in range(zones)]
    for net, flat in verdicts.items():
        if flat is not None:
            blocking[zone_of[flat[1]]].add(net)

    def earliest_cover(net: IPNetwork, before: int) -> int:
        """The first zone before ``before`` with a blocking prefix strictly above ``net``."""
        above = [s for s in _supernets(net, lengths) if s != net]
        for z in range(before):
            if blocking[z] and any(s in blocking[z] for s in above):
                return z
        return -1

    for net, flat in verdicts.items():
        owner = rpz_ip_owner(net)
        if flat is not None:
            home = zone_of[flat[1]]
            placed.owners[home][owner] = flat[0]
            cover = earliest_cover(net, home)
            if cover >= 0:
                placed.owners[cover][owner] = flat[0]
                placed.copied[cover] += 1
        else:
            cover = earliest_cover(net, zones)
            if cover >= 0:
                placed.owners[cover][owner] = None
    return placed


def applicable(index: RuleIndex, jurisdiction: str, at: float) -> list[bool]:
    """Per indexed order: whether it applies to clients of ``jurisdiction`` at ``at``
    (its own or an all-jurisdiction order, ``effective_from <= at < expires``)."""
    return [
        e.start <= at < e.end and e.ref.jurisdiction in (jurisdiction, ALL_JURISDICTIONS)
        for e in index.entries
    ]


def jurisdiction_zones(
    index: RuleIndex,
    jurisdiction: str,
    at: float,
    suffix: str = DEFAULT_SUFFIX,
    bases: Sequence[Basis] = BASES,
    names: Sequence[str] | None = None,
) -> list[Zone]:
    """The zones of ``jurisdiction`` at time ``at`` (epoch seconds), one per basis in
    load order; with a single basis, one zone holding every trigger (its name is
    ``names[0]`` if given). ``names`` overrides the zone names."""
    zones = len(bases)
    zone_of = {b: bases.index(b) if b in bases else 0 for b in Basis}
    applies = applicable(index, jurisdiction, at)
    decoded = index.decoded
    listed: dict[str, tuple[_Rule, ...]] = {}
    trigger_labels = 0
    for name, codes in index.names.items():
        rules = tuple(r for r in map(decoded, codes) if applies[r.order])
        if not rules:
            continue
        if is_rpz_trigger_name(name):
            trigger_labels += 1
            continue
        listed[name] = rules
    nets: dict[IPNetwork, tuple[_Rule, ...]] = {}
    for net, codes in index.networks.items():
        rules = tuple(r for r in map(decoded, codes) if applies[r.order])
        if rules:
            nets[net] = rules
    name_verdicts = _name_verdicts(index, listed)
    placed = _place_names(name_verdicts, zone_of, zones)
    ip_verdicts = _ip_verdicts(index, nets)
    placed_ips = _place_networks(ip_verdicts, zone_of, zones)
    ip_blocks = any(v is not None for v in ip_verdicts.values())

    zone_names = list(names) if names else [zone_name(jurisdiction, b, suffix) for b in bases]
    out: list[Zone] = []
    for z, basis in enumerate(bases):
        policies = placed.owners[z]
        policies.update(placed_ips.owners[z])
        name = zone_names[z]
        room = MAX_NAME - len(name) - 1  # the owner's own octets: labels and lengths
        too_long = [o for o in policies if len(o) + 1 > room]
        for owner in too_long:
            del policies[owner]
        notes = _notes(
            basis,
            zones,
            placed.copied[z] + placed_ips.copied[z],
            policies,
            name_verdicts,
            ip_verdicts,
            zone_of,
            z,
            ip_blocks,
        )
        if trigger_labels and z == 0:
            notes.append(
                f"{trigger_labels} names ending in an RPZ trigger label (rpz-ip, rpz-nsdname, "
                "...) cannot be QNAME triggers: omitted"
            )
        if too_long:
            notes.append(f"{len(too_long)} triggers too long for the zone name: omitted")
        out.append(Zone(name, jurisdiction, basis, policies, tuple(notes)))
    return out


def _notes(
    basis: Basis,
    zones: int,
    copied: int,
    policies: Mapping[str, Policy],
    names: Mapping[str, tuple[_Flat, _Flat]],
    ips: Mapping[IPNetwork, _Flat],
    zone_of: Mapping[Basis, int],
    z: int,
    ip_blocks: bool,
) -> list[str]:
    """What this zone cannot state exactly, counted."""
    notes: list[str] = []
    if copied and zones > 1:
        notes.append(
            f"{copied} triggers decided by orders of another basis are served here because "
            f"a wildcard of this zone covers them: resolvers signal EDE {basis.ede.value} "
            "for them"
        )
    refused = sum(1 for p in policies.values() if p is Action.REFUSED)
    if refused:
        notes.append(
            f"{refused} triggers are refused by the gateway; RPZ has no REFUSED: rpz-drop "
            "makes a resolver not answer"
        )
    filtered = 0
    for owner in policies:
        flat: _Flat
        if owner.endswith(".rpz-ip"):
            continue
        base = owner[2:] if owner.startswith("*.") else owner
        pair = names.get(base)
        if pair is None:
            continue
        flat = pair[1] if owner.startswith("*.") else pair[0]
        if flat is not None and flat[2] is EDECode.FILTERED and zone_of[flat[1]] == z:
            filtered += 1
    for flat in ips.values():
        if flat is not None and flat[2] is EDECode.FILTERED and zone_of[flat[1]] == z:
            filtered += 1
    if filtered:
        notes.append(
            f"{filtered} triggers come from subscriber-filter orders (EDE 17): resolvers "
            f"signal EDE {basis.ede.value}"
        )
    if ip_blocks:
        passthru = sum(1 for o, p in policies.items() if p is None and not o.endswith(".rpz-ip"))
        if passthru:
            notes.append(
                f"{passthru} name exceptions (rpz-passthru) also exempt their names from "
                "response-IP triggers on RPZ resolvers; the gateway checks answer addresses "
                "of every allowed name"
            )
    return notes


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


def next_bound(index: RuleIndex, at: float) -> float:
    """The first instant after ``at`` at which an indexed order takes effect or expires
    (zones computed at ``at`` may change then); ``math.inf`` if none."""
    bounds = index.bounds()
    i = bisect.bisect_right(bounds, at)
    return bounds[i] if i < len(bounds) else math.inf
