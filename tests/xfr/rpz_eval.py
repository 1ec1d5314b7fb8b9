"""Reference readers of a list of response policy zones, as the resolvers we feed read them.

``longest_wildcard`` is the RPZ draft's reading (BIND, PowerDNS Recursor, Knot Resolver):
in the first zone with a match, the exact owner of the name, else the deepest ``*.``
wildcard above it. ``closest_encloser`` is Unbound's (checked against Unbound 1.17 in
tests/xfr/test_unbound.py): the zone's triggers are local zones, the closest one at or
above the name decides, and a node with only an exact trigger (or a wildcard queried at
its apex) matches nothing in that zone. Response-IP triggers: the longest prefix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence

from clearwall.formats.rpz import rpz_ip_network
from clearwall.xfr.zones import Policy, Zone

NO_MATCH = object()


def _ancestors(name: str) -> Iterator[str]:
    start = name.find(".")
    while start >= 0:
        yield name[start + 1 :]
        start = name.find(".", start + 1)


def longest_wildcard(zones: Sequence[Zone], name: str) -> tuple[Policy | object, Zone | None]:
    """The policy (or NO_MATCH) and the zone that decided, the RPZ draft's way."""
    for zone in zones:
        p = zone.policies
        if name in p:
            return p[name], zone
        for ancestor in _ancestors(name):
            owner = "*." + ancestor
            if owner in p:
                return p[owner], zone
    return NO_MATCH, None


def closest_encloser(zones: Sequence[Zone], name: str) -> tuple[Policy | object, Zone | None]:
    """The policy (or NO_MATCH) and the zone that decided, Unbound's way."""
    for zone in zones:
        p = zone.policies
        nodes = {o[2:] if o.startswith("*.") else o for o in p if not o.endswith(".rpz-ip")}
        if name in nodes:
            if name in p:
                return p[name], zone
            continue  # only a wildcard at this node: it does not match its apex
        for ancestor in _ancestors(name):
            if ancestor in nodes:
                owner = "*." + ancestor
                if owner in p:
                    return p[owner], zone
                break  # an exact-only node stops the search in this zone
    return NO_MATCH, None


def response_ip(zones: Sequence[Zone], address: str) -> tuple[Policy | object, Zone | None]:
    """The policy (or NO_MATCH) of the longest matching ``rpz-ip`` prefix, first zone first."""
    ip = ipaddress.ip_address(address)
    for zone in zones:
        best: tuple[int, Policy] | None = None
        for owner, policy in zone.policies.items():
            if not owner.endswith(".rpz-ip"):
                continue
            net = rpz_ip_network(owner[: -len(".rpz-ip")])
            inside = ip.version == net.version and ip in net
            if inside and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, policy)
        if best is not None:
            return best[1], zone
    return NO_MATCH, None
