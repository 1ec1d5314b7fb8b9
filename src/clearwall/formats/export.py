"""Writing rules out as an RPZ zone, a domains list or a hosts file.

RPZ is the lossless form (every kind and action has an RPZ spelling); domains and hosts
files can only say "block this name", so rules they cannot express are left out and
counted in a comment at the top.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from clearwall.formats.rpz import rpz_ip_owner
from clearwall.model import ACTION_PRECEDENCE, Action, RuleKind
from clearwall.policy.model import RuleSpec

# The RPZ spelling of each action (draft-vixie-dnsop-dns-rpz section 4). REFUSED has no
# RPZ action of its own; rpz-drop (no answer) is closest to "the resolver will not
# answer this", and our importer maps it back to REFUSED. The zone transfer primary
# (``clearwall.xfr``) serves exactly these records: this table is the one spelling of
# RPZ actions in the codebase.
RPZ_CNAME_TARGET = {
    Action.NXDOMAIN: ".",
    Action.NODATA: "*.",
    Action.REFUSED: "rpz-drop.",
}
RPZ_PASSTHRU = "rpz-passthru."
RPZ_TRIGGER_LABELS = frozenset({"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"})
RPZ_SOA_NAMES = "localhost. hostmaster.localhost."
"""The SOA MNAME and RNAME of every zone clearwall writes (no real host is named)."""
RPZ_NS = "localhost."
"""The NS record at every zone's apex (RPZ zones are never delegated to)."""


def rpz_owners(rule: RuleSpec) -> list[str]:
    """The owner names (relative to the zone) that state ``rule`` as an RPZ trigger.

    SUBTREE is ``name`` and ``*.name``, WILDCARD only ``*.name``, EXACT ``name``, and a
    response-IP rule ``prefix.reversed-address.rpz-ip``.
    """
    kind = rule.kind
    if kind.is_ip:
        return [rpz_ip_owner(ipaddress.ip_network(rule.value, strict=False))]
    if kind in (RuleKind.SUBTREE, RuleKind.ALLOW_SUBTREE):
        return [rule.value, "*." + rule.value]
    if kind in (RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD):
        return ["*." + rule.value]
    return [rule.value]


def is_rpz_trigger_name(name: str) -> bool:
    """True when a policy name cannot be a QNAME trigger: its last label is one RPZ
    reads as another trigger type (``rpz-ip``, ``rpz-nsdname``...)."""
    return name.rsplit(".", 1)[-1] in RPZ_TRIGGER_LABELS


def rpz_rdata(
    policy: Action | None, sinkhole_v4: str = "0.0.0.0", sinkhole_v6: str = "::"
) -> list[tuple[str, str]]:
    """The records (type, data) of one trigger's policy; ``None`` stands for an exception
    (``rpz-passthru.``), SINKHOLE for local data (an A and an AAAA record)."""
    if policy is None:
        return [("CNAME", RPZ_PASSTHRU)]
    if policy is Action.SINKHOLE:
        return [("A", sinkhole_v4), ("AAAA", sinkhole_v6)]
    return [("CNAME", RPZ_CNAME_TARGET[policy])]


def rpz_soa(
    serial: int, ttl: int, refresh: int = 3600, retry: int = 600, expire: int = 86400
) -> str:
    """The SOA record data of a zone clearwall writes (negative TTL = ``ttl``)."""
    return f"{RPZ_SOA_NAMES} {serial} {refresh} {retry} {expire} {ttl}"


def rpz_zone_text(
    origin: str,
    policies: Iterable[tuple[str, Action | None]],
    serial: int = 1,
    ttl: int = 60,
    comments: Iterable[str] = (),
    sinkhole_v4: str = "0.0.0.0",
    sinkhole_v6: str = "::",
    timers: tuple[int, int, int] = (3600, 600, 86400),
) -> str:
    """A zone file: ``comments`` as ``;`` lines, ``$ORIGIN``, ``$TTL``, SOA, NS, then the
    records of each (owner, policy) pair in the order given (see ``rpz_rdata``)."""
    origin = origin if origin.endswith(".") else origin + "."
    lines = [f"; {line}".rstrip() for line in comments]
    lines += [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ SOA {rpz_soa(serial, ttl, *timers)}",
        f"@ NS {RPZ_NS}",
    ]
    for owner, policy in policies:
        for rdtype, data in rpz_rdata(policy, sinkhole_v4, sinkhole_v6):
            lines.append(f"{owner} {rdtype} {data}")
    return "\n".join(lines) + "\n"


def export_rpz(
    rules: Iterable[tuple[RuleSpec, Action]],
    origin: str = "rpz.clearwall.",
    serial: int = 1,
    ttl: int = 60,
    comment: str = "",
    sinkhole_v4: str = "0.0.0.0",
    sinkhole_v6: str = "::",
) -> str:
    """An RPZ zone (SOA, NS, one policy per owner) for rules with their effective actions.

    SUBTREE writes ``name`` and ``*.name``, WILDCARD only ``*.name``; allow kinds write
    ``rpz-passthru.``; SINKHOLE writes local data (A ``sinkhole_v4``, AAAA ``sinkhole_v6``).
    An owner can hold one policy only: when rules collide on an owner, an exception wins,
    otherwise the action first in ``ACTION_PRECEDENCE``.
    A name whose last label is an RPZ trigger label (``rpz-ip``…) cannot be a QNAME
    trigger; such rules are left out and counted in a comment.

    This writes each rule as it is (export then import gives the rules back); it does not
    work out the matcher's precedence between rules. ``clearwall.xfr.zones`` does, for
    a jurisdiction's whole policy, and is what ``clearwall export rpz`` writes.
    """
    chosen: dict[str, Action | None] = {}  # None stands for passthru
    unspellable = 0
    for rule, action in rules:
        if not rule.kind.is_ip and is_rpz_trigger_name(rule.value):
            unspellable += 1
            continue
        policy = None if rule.kind.is_allow else action
        for owner in rpz_owners(rule):
            known = chosen.get(owner)
            if owner not in chosen or _stronger(policy, known):
                chosen[owner] = policy
    comments = comment.splitlines()
    if unspellable:
        comments.append(f"{unspellable} rules on names ending in an RPZ trigger label omitted")
    return rpz_zone_text(
        origin,
        chosen.items(),
        serial,
        ttl,
        comments,
        sinkhole_v4,
        sinkhole_v6,
    )


def _stronger(new: Action | None, old: Action | None) -> bool:
    if old is None:
        return False
    if new is None:
        return True
    return ACTION_PRECEDENCE.index(new) < ACTION_PRECEDENCE.index(old)


def _names(rules: Iterable[RuleSpec], allowed: frozenset[RuleKind]) -> tuple[list[RuleSpec], int]:
    kept: dict[RuleSpec, None] = {}
    dropped = 0
    for rule in rules:
        if rule.kind in allowed:
            kept[RuleSpec(rule.kind, rule.value)] = None
        else:
            dropped += 1
    return list(kept), dropped


def export_domains(rules: Iterable[RuleSpec], wildcards: bool = True) -> str:
    """A domains list: EXACT as ``name``, SUBTREE as ``*.name`` (the wildcard spelling).

    With ``wildcards=False`` SUBTREE rules are written as plain names too, for consumers
    that reject ``*.``; that drops their subdomains. Exceptions, WILDCARD and response-IP
    rules have no spelling here and are left out (counted in the header).
    """
    kept, dropped = _names(rules, frozenset({RuleKind.EXACT, RuleKind.SUBTREE}))
    lines = [f"# {dropped} rules not expressible as domains omitted"] if dropped else []
    for rule in kept:
        prefix = "*." if wildcards and rule.kind is RuleKind.SUBTREE else ""
        lines.append(prefix + rule.value)
    return "".join(line + "\n" for line in lines)


def export_hosts(rules: Iterable[RuleSpec], address: str = "0.0.0.0") -> str:
    """A hosts file mapping each blocked name to ``address``.

    A hosts file matches names exactly, so a SUBTREE rule blocks only its own name here;
    exceptions, WILDCARD and response-IP rules are left out (counted in the header).
    """
    ipaddress.ip_address(address)
    kept, dropped = _names(rules, frozenset({RuleKind.EXACT, RuleKind.SUBTREE}))
    lines = [f"# {dropped} rules not expressible in a hosts file omitted"] if dropped else []
    seen: set[str] = set()
    for rule in kept:
        if rule.value not in seen:
            seen.add(rule.value)
            lines.append(f"{address} {rule.value}")
    return "".join(line + "\n" for line in lines)
