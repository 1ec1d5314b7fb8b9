"""Response Policy Zone files (draft-vixie-dnsop-dns-rpz, BIND ARM) read as policy rules.

Owner names are made absolute with the current ``$ORIGIN`` and then taken relative to the
zone (the SOA owner), as BIND and Unbound do; without ``$ORIGIN`` the SOA owner is the
origin, and a file without either (``@ SOA …``, HaGeZi's form) reads relative names as
the triggers themselves.

Triggers: a QNAME trigger ``name`` (EXACT) and ``*.name`` (WILDCARD, strictly below),
merged into one SUBTREE rule when both carry the same action; ``<prefix>.<reversed
address>.rpz-ip`` response-IP triggers (IPv6 with ``zz`` for ``::``). ``rpz-nsdname``,
``rpz-nsip`` and ``rpz-client-ip`` triggers are reported as unsupported.

Actions (section 4 of the draft): ``CNAME .`` NXDOMAIN, ``CNAME *.`` NODATA,
``CNAME rpz-passthru.`` (or a CNAME to the trigger itself) an exception, ``CNAME
rpz-drop.`` REFUSED with a note (clearwall always answers), ``CNAME rpz-tcp-only.``
unsupported, any other record (local data) SINKHOLE with a note. When one trigger is
given two different actions the first is kept and the second reported, as Unbound does.
Record data is checked with dnspython's rdata parser; the line reader itself is a lean
hand-written one because dnspython's tokenizer reads a character at a time.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from clearwall.formats.base import MAX_LINE, Collector, strip_comment
from clearwall.model import Action, RuleKind

NAME = "rpz"

UNKNOWN_ORIGIN = "origin.invalid."
"""Stands for the zone name a file without ``$ORIGIN`` or absolute SOA leaves unsaid."""

_TTL = re.compile(r"\d+|(?:\d+[smhdwSMHDW])+")
_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY"})
_UNSUPPORTED_TRIGGERS = {
    "rpz-nsdname": "NSDNAME triggers (name-server name) are not supported",
    "rpz-nsip": "NSIP triggers (name-server address) are not supported",
    "rpz-client-ip": "client-IP triggers are not supported; use a jurisdiction's networks",
}


class Policy(enum.Enum):
    """The RPZ action one trigger's records state."""

    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    PASSTHRU = "passthru"
    DROP = "drop"
    LOCAL = "local-data"


_FAST_TARGETS = {
    ".": Policy.NXDOMAIN,
    "*.": Policy.NODATA,
    "rpz-passthru.": Policy.PASSTHRU,
    "rpz-drop.": Policy.DROP,
}

_ACTION = {
    Policy.NXDOMAIN: Action.NXDOMAIN,
    Policy.NODATA: Action.NODATA,
    Policy.DROP: Action.REFUSED,
    Policy.LOCAL: Action.SINKHOLE,
    Policy.PASSTHRU: None,
}
_NOTES = {
    Policy.DROP: "rpz-drop imported as refused: clearwall always answers",
    Policy.LOCAL: "local data imported as a sinkhole; its record data is not kept",
}


@dataclass(slots=True)
class _Trigger:
    """The policy first stated for one trigger, and where."""

    policy: Policy
    lineno: int
    line: str


def rpz_ip_network(labels: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network an ``rpz-ip`` owner names, given its labels before ``.rpz-ip``.

    ``32.1.2.0.192`` is 192.0.2.1/32; ``128.1.zz.db8.2001`` is 2001:db8::1/128 (labels
    are reversed, ``zz`` stands for the ``::`` run). Raises ValueError when malformed.
    """
    prefix, _, rest = labels.partition(".")
    if not prefix.isdigit() or not rest:
        raise ValueError(f"not an rpz-ip owner: {labels!r}")
    parts = rest.split(".")[::-1]
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        address = ".".join(parts)
    else:
        if parts.count("zz") > 1 or len(parts) > 8:
            raise ValueError(f"not an IPv6 rpz-ip owner: {labels!r}")
        if "zz" in parts:
            i = parts.index("zz")
            address = ":".join(parts[:i]) + "::" + ":".join(parts[i + 1 :])
        else:
            address = ":".join(parts)
    return ipaddress.ip_network(f"{address}/{int(prefix)}", strict=False)


def rpz_ip_owner(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """The relative ``rpz-ip`` owner name for ``network`` (inverse of ``rpz_ip_network``)."""
    if network.version == 4:
        labels = str(network.network_address).split(".")
    else:
        left, sep, right = network.network_address.compressed.partition("::")
        labels = [w for w in left.split(":") if w]
        if sep:
            labels.append("zz")
            labels.extend(w for w in right.split(":") if w)
    return f"{network.prefixlen}.{'.'.join(reversed(labels))}.rpz-ip"


class _ZoneReader:
    """Walks a zone file line by line, collecting one policy per trigger."""

    def __init__(self, out: Collector) -> None:
        self.out = out
        self.origin = UNKNOWN_ORIGIN
        self.explicit_origin = False
        self.zone: str | None = None
        self.owner: str | None = None
        self.pending: list[str] = []
        self.pending_line = 0
        self.names: dict[str, _Trigger] = {}
        self.ips: dict[str, _Trigger] = {}
        # True once relative owner names are relative to the zone itself: the common
        # "name CNAME ." line then needs no name arithmetic at all.
        self.fast = False

    def feed(self, lineno: int, raw: str) -> None:
        """Read one line of the zone file."""
        out = self.out
        line = raw.rstrip("\r\n")
        if self.fast and not self.pending:
            fields = line.split()
            if (
                len(fields) == 3
                and fields[1] in ("CNAME", "cname")
                and line[0] not in " \t$"
                and ";" not in line
                and "(" not in line
                and "\\" not in line
                and "rpz-" not in fields[0]
            ):
                policy = _FAST_TARGETS.get(fields[2])
                owner = fields[0]
                if policy is not None and owner[-1] != "." and owner != "@":
                    key = owner.lower()
                    self.owner = key + "." + self.origin
                    self._add_trigger(self.names, key, policy, lineno, raw)
                    return
        if len(line) > MAX_LINE:
            out.issue(lineno, "line too long", raw)
            return
        if ";" in line:
            line = strip_comment(line, ";")
            if not line.strip():
                out.skip("comment")
                return
        if self.pending:
            self.pending.append(line)
            if ")" not in line:
                return
            line = " ".join(self.pending)
            lineno, self.pending = self.pending_line, []
        elif "(" in line and ")" not in line:
            self.pending, self.pending_line = [line], lineno
            return
        if not line.strip():
            out.skip("blank")
            return
        if line[0] == "$":
            self._directive(line, lineno, raw)
            return
        if "(" in line:
            line = line.replace("(", " ").replace(")", " ")
        self._record(line, lineno, raw)

    def _directive(self, line: str, lineno: int, raw: str) -> None:
        fields = line.split()
        keyword = fields[0].upper()
        if keyword == "$ORIGIN" and len(fields) == 2:
            self.origin = self._absolute(fields[1])
            self.explicit_origin = True
            self.fast = self.origin == self.zone
            self.out.skip("directive")
        elif keyword == "$TTL":
            self.out.skip("directive")
        else:
            self.out.issue(lineno, f"unsupported zone-file directive {fields[0]}", raw)

    def _absolute(self, name: str) -> str:
        if "\\" in name:
            origin = dns.name.from_text(self.origin)
            return dns.name.from_text(name, origin=origin).to_text().lower()
        name = name.lower()
        if name == "@":
            return self.origin
        if name.endswith("."):
            return name
        return name + "." + self.origin if self.origin != "." else name + "."

    def _record(self, line: str, lineno: int, raw: str) -> None:
        out = self.out
        fields = line.split()
        if line[0] in " \t":
            if self.owner is None:
                out.issue(lineno, "record without an owner name", raw)
                return
            i = 0
        else:
            try:
                self.owner = self._absolute(fields[0])
            except dns.exception.DNSException as exc:
                out.issue(lineno, f"invalid owner name: {exc}", raw)
                return
            i = 1
        owner = self.owner
        # [TTL] [class] or [class] [TTL], in either order (RFC 1035 section 5.1).
        for _ in range(2):
            if i < len(fields) and (_TTL.fullmatch(fields[i]) or fields[i].upper() in _CLASSES):
                i += 1
        if i >= len(fields):
            out.issue(lineno, "record without a type", raw)
            return
        rtype = fields[i].upper()
        rdata = fields[i + 1 :]
        if rtype == "SOA":
            self._soa(owner, lineno, raw)
            return
        if self.zone is None:
            self.zone = self.origin
        zone = self.zone
        if owner == zone:
            if rtype == "NS":
                out.skip("zone")
            else:
                out.issue(lineno, f"{rtype} record at the zone apex is not a policy", raw)
            return
        if owner.endswith("." + zone):
            relative = owner[: -len(zone) - 1]
        elif zone == ".":
            relative = owner[:-1]
        else:
            out.issue(lineno, f"owner {owner} lies outside the zone {zone}", raw)
            return
        policy = self._policy(rtype, rdata, owner, lineno, raw)
        if policy is not None:
            self._trigger(relative, policy, lineno, raw)

    def _soa(self, owner: str, lineno: int, raw: str) -> None:
        if self.zone is None:
            self.zone = owner
            if not self.explicit_origin:
                self.origin = owner
            self.fast = self.origin == self.zone
            self.out.skip("zone")
        elif owner == self.zone:
            self.out.issue(lineno, "second SOA record for the zone ignored", raw)
        else:
            self.out.issue(lineno, "second zone in one file: import each zone by itself", raw)

    def _policy(
        self, rtype: str, rdata: list[str], owner: str, lineno: int, raw: str
    ) -> Policy | None:
        out = self.out
        if rtype == "CNAME":
            if len(rdata) != 1:
                out.issue(lineno, "CNAME needs exactly one target", raw)
                return None
            target = rdata[0].lower()
            if target == ".":
                return Policy.NXDOMAIN
            if target == "*.":
                return Policy.NODATA
            if target == "rpz-passthru.":
                return Policy.PASSTHRU
            if target == "rpz-drop.":
                return Policy.DROP
            if target == "rpz-tcp-only.":
                out.issue(lineno, "rpz-tcp-only is not supported; rule skipped", raw)
                return None
            try:
                if self._absolute(target) == owner:
                    return Policy.PASSTHRU  # the draft's older spelling of passthru
            except dns.exception.DNSException as exc:
                out.issue(lineno, f"invalid CNAME target: {exc}", raw)
                return None
            return Policy.LOCAL
        if rtype in ("NS", "SOA", "DNAME"):
            out.issue(lineno, f"{rtype} record below the apex is not a policy", raw)
            return None
        try:
            rdtype = dns.rdatatype.from_text(rtype)
            dns.rdata.from_text(
                dns.rdataclass.IN, rdtype, " ".join(rdata), origin=dns.name.from_text(self.origin)
            )
        except (dns.exception.DNSException, ValueError) as exc:
            out.issue(lineno, f"invalid {rtype} record: {exc}", raw)
            return None
        return Policy.LOCAL

    def _trigger(self, relative: str, policy: Policy, lineno: int, raw: str) -> None:
        last = relative.rsplit(".", 1)[-1]
        if last in _UNSUPPORTED_TRIGGERS:
            self.out.issue(lineno, _UNSUPPORTED_TRIGGERS[last], raw)
            return
        if last == "rpz-ip":
            try:
                key = str(rpz_ip_network(relative[: -len(".rpz-ip")]))
            except ValueError as exc:
                self.out.issue(lineno, f"invalid rpz-ip trigger: {exc}", raw)
                return
            table = self.ips
        else:
            key, table = relative, self.names
        self._add_trigger(table, key, policy, lineno, raw)

    def _add_trigger(
        self, table: dict[str, _Trigger], key: str, policy: Policy, lineno: int, raw: str
    ) -> None:
        known = table.get(key)
        if known is None:
            table[key] = _Trigger(policy, lineno, raw)
        elif known.policy is policy:
            self.out.skip("duplicate")
        else:
            self.out.issue(
                lineno,
                f"second action {policy.value} for {key} ignored; "
                f"line {known.lineno} ({known.policy.value}) is kept",
                raw,
            )

    def finish(self) -> None:
        """Turn the collected triggers into rules, merging ``name``/``*.name`` pairs."""
        out = self.out
        if self.pending:
            out.issue(self.pending_line, "unclosed parenthesis", self.pending[0])
        emitted: set[str] = set()
        for key, trig in self.names.items():
            if key in emitted:
                continue
            wildcard = key.startswith("*.")
            base = key[2:] if wildcard else key
            partner_key = base if wildcard else "*." + key
            partner = self.names.get(partner_key)
            allow = trig.policy is Policy.PASSTHRU
            if partner is not None and partner.policy is trig.policy:
                kind = RuleKind.ALLOW_SUBTREE if allow else RuleKind.SUBTREE
                emitted.add(partner_key)
            elif wildcard:
                kind = RuleKind.ALLOW_WILDCARD if allow else RuleKind.WILDCARD
            else:
                kind = RuleKind.ALLOW_EXACT if allow else RuleKind.EXACT
            if out.add_name(kind, base, trig.lineno, trig.line, _ACTION[trig.policy]):
                self._note(trig)
        for cidr, trig in self.ips.items():
            kind = (
                RuleKind.ALLOW_RESPONSE_IP
                if trig.policy is Policy.PASSTHRU
                else RuleKind.RESPONSE_IP
            )
            self._note(trig)
            out.add(kind, cidr, _ACTION[trig.policy])

    def _note(self, trig: _Trigger) -> None:
        note = _NOTES.get(trig.policy)
        if note:
            self.out.issue(trig.lineno, note, trig.line)


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read an RPZ zone file into ``out``."""
    reader = _ZoneReader(out)
    lineno = 0
    for lineno, raw in enumerate(lines, 1):
        reader.feed(lineno, raw)
    reader.finish()
    out.lines = lineno
