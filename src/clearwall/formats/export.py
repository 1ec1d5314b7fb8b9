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
# RPZ action of its own; rpz-drop (no answer) is the closest "the resolver will not
# answer this", and our importer maps it back to REFUSED.
_CNAME_TARGET = {
    Action.NXDOMAIN: ".",
    Action.NODATA: "*.",
    Action.REFUSED: "rpz-drop.",
}
_PASSTHRU = "rpz-passthru."
_TRIGGER_LABELS = frozenset({"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"})


def _owners(rule: RuleSpec) -> list[str]:
    kind = rule.kind
    if kind.is_ip:
        return [rpz_ip_owner(ipaddress.ip_network(rule.value, strict=False))]
    if kind in (RuleKind.SUBTREE, RuleKind.ALLOW_SUBTREE):
        return [rule.value, "*." + rule.value]
    if kind in (RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD):
        return ["*." + rule.value]
    return [rule.value]


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
    An owner can hold one policy only: when rules collide on an owner, an exception wins
    (as in clearwall's matcher), otherwise the action first in ``ACTION_PRECEDENCE``.
    A name whose last label is an RPZ trigger label (``rpz-ip``…) cannot be a QNAME
    trigger; such rules are left out and counted in a comment.
    """
    origin = origin if origin.endswith(".") else origin + "."
    chosen: dict[str, Action | None] = {}  # None stands for passthru
    unspellable = 0
    for rule, action in rules:
        if not rule.kind.is_ip and rule.value.rsplit(".", 1)[-1] in _TRIGGER_LABELS:
            unspellable += 1
            continue
        policy = None if rule.kind.is_allow else action
        for owner in _owners(rule):
            known = chosen.get(owner)
            if owner not in chosen or _stronger(policy, known):
                chosen[owner] = policy
    lines = [f"; {line}".rstrip() for line in comment.splitlines()]
    if unspellable:
        lines.append(f"; {unspellable} rules on names ending in an RPZ trigger label omitted")
    lines += [
        f"$ORIGIN {origin}",
        f"$TTL {ttl}",
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}",
        "@ NS localhost.",
    ]
    for owner, policy in chosen.items():
        if policy is None:
            lines.append(f"{owner} CNAME {_PASSTHRU}")
        elif policy is Action.SINKHOLE:
            lines.append(f"{owner} A {sinkhole_v4}")
            lines.append(f"{owner} AAAA {sinkhole_v6}")
        else:
            lines.append(f"{owner} CNAME {_CNAME_TARGET[policy]}")
    return "\n".join(lines) + "\n"


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
