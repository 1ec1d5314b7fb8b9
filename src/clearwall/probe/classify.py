"""Pure classification of one target's measurements, in the spirit of OONI Web Connectivity.

The order of the checks follows the order of a page load (DNS, TCP, TLS, HTTP): the
first step that differs from the control explains the failure of every later one. A
step that failed without a control to compare with is reported as *undetermined*, with
the verdicts it could not separate, instead of guessing. A control counts only when it
was measured: a helper that failed, refused (a non-public address) or skipped a step,
or a control resolver that gave no address, is a missing control, never a negative
one, and the evidence says why it is missing.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from clearwall.probe.dnsmeasure import DNSMeasurement
from clearwall.probe.netmeasure import HTTPResponse
from clearwall.probe.records import ControlMeasurement, TargetMeasurement

DEADLINE_EXCEEDED = "probe_deadline_exceeded"
"""DNS ``failure`` of a target the runner gave up on: nothing can be concluded."""
INTERNAL_ERROR = "probe_internal_error"
"""DNS ``failure`` of a target whose measurement raised: nothing can be concluded."""

BODY_PROPORTION_THRESHOLD = 0.7
"""Bodies whose lengths differ by more than this ratio count as different (OONI's figure)."""


class Kind(enum.StrEnum):
    """What happened to a target."""

    ACCESSIBLE = "accessible"
    DNS_TRANSPARENT_BLOCK = "dns-transparent-block"
    DNS_TAMPERING = "dns-tampering"
    TCP_BLOCKING = "tcp-blocking"
    TLS_INTERFERENCE = "tls-interference"
    HTTP_451 = "http-451"
    HTTP_BLOCKPAGE = "http-blockpage"
    HTTP_DIFF = "http-diff"
    DOWN = "down"
    UNDETERMINED = "undetermined"

    @property
    def blocked(self) -> bool:
        """True when the target is withheld by the network (transparently or not)."""
        return self not in (Kind.ACCESSIBLE, Kind.DOWN, Kind.UNDETERMINED)


# OONI's ``blocking`` key for each kind: which layer failed (False: not blocked).
OONI_BLOCKING: dict[Kind, str | bool | None] = {
    Kind.ACCESSIBLE: False,
    Kind.DNS_TRANSPARENT_BLOCK: "dns",
    Kind.DNS_TAMPERING: "dns",
    Kind.TCP_BLOCKING: "tcp_ip",
    Kind.TLS_INTERFERENCE: "http-failure",
    Kind.HTTP_451: "http-diff",
    Kind.HTTP_BLOCKPAGE: "http-diff",
    Kind.HTTP_DIFF: "http-diff",
    Kind.DOWN: False,
    Kind.UNDETERMINED: None,
}


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict for one target with its evidence, one human sentence per fact."""

    kind: Kind
    evidence: tuple[str, ...] = ()
    candidates: tuple[Kind, ...] = ()
    weak: bool = False  # only the page content differs: dynamic sites do that too

    @property
    def blocking(self) -> str | bool | None:
        """OONI's ``blocking`` key: the failing layer, False, or None when undetermined."""
        return OONI_BLOCKING[self.kind]

    @property
    def accessible(self) -> bool | None:
        """OONI's ``accessible`` key: True, False, or None when it cannot be told."""
        if self.kind is Kind.ACCESSIBLE:
            return True
        if self.kind is Kind.UNDETERMINED:
            return None
        return False


def is_bogon(address: str) -> bool:
    """True for addresses that no public site answers with (private, loopback, ...)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
    )


def http_matches(probe: HTTPResponse, control: HTTPResponse) -> tuple[bool, str]:
    """Whether two successful responses look like the same page, and why not."""
    if probe.status_code != control.status_code:
        return False, f"status {probe.status_code} vs control {control.status_code}"
    if probe.title and control.title and probe.title != control.title:
        return False, f"title {probe.title!r} vs control {control.title!r}"
    a, b = probe.body_length or 0, control.body_length or 0
    if max(a, b) > 0 and min(a, b) / max(a, b) < BODY_PROPORTION_THRESHOLD:
        return False, f"body length {a} vs control {b}"
    return True, ""


def missing_control(control: ControlMeasurement | None, step: str) -> str:
    """Why the test helper gave no ``step`` result to compare with, in one sentence."""
    if control is None:
        return "no test helper to compare with"
    if control.failure is not None:
        return f"the test helper did not measure: {control.failure}"
    return f"the test helper made no {step} measurement to compare with"


def _dns_kind(
    dns: DNSMeasurement,
    control: DNSMeasurement | None,
    helper: ControlMeasurement | None,
    asked: ControlMeasurement | None = None,
) -> Classification | None:
    if dns.failure in (DEADLINE_EXCEEDED, INTERNAL_ERROR):
        return Classification(
            Kind.UNDETERMINED,
            (f"measurement did not finish: {dns.failure}",),
            (Kind.DOWN, Kind.DNS_TAMPERING, Kind.TCP_BLOCKING, Kind.TLS_INTERFERENCE),
        )
    block = dns.block_ede
    if block is not None:
        facts = [f"resolver answered {dns.rcode} with EDE {block.code}"]
        if block.text:
            facts.append(f"EXTRA-TEXT: {block.text[:300]}")
        if dns.sde is not None:
            facts.append("EXTRA-TEXT is a Structured DNS Error")
        return Classification(Kind.DNS_TRANSPARENT_BLOCK, tuple(facts))
    if control is None and helper is not None and helper.usable:
        control = helper.dns
    if dns.failure is not None:
        if control is None:
            facts = [f"resolver failed: {dns.failure}", "no control DNS to compare with"]
            if asked is not None and asked.failure is not None:
                facts.append(missing_control(asked, "DNS"))
            return Classification(Kind.UNDETERMINED, tuple(facts), (Kind.DNS_TAMPERING, Kind.DOWN))
        if control.failure is None:
            return Classification(
                Kind.DNS_TAMPERING,
                (
                    f"resolver failed: {dns.failure} without an EDE",
                    f"control resolved {', '.join(control.addresses)}",
                ),
            )
        if control.failure == dns.failure or control.failure in (
            "dns_nxdomain_error",
            "dns_no_answer",
        ):
            return Classification(
                Kind.DOWN, (f"resolver failed: {dns.failure}", f"control failed: {control.failure}")
            )
        return Classification(
            Kind.UNDETERMINED,
            (f"resolver failed: {dns.failure}", f"control failed too: {control.failure}"),
            (Kind.DNS_TAMPERING, Kind.DOWN),
        )
    if control is None:
        return None
    if control.failure is not None:
        if control.failure == "dns_nxdomain_error":
            return Classification(
                Kind.DNS_TAMPERING,
                (
                    f"resolver answered {', '.join(dns.addresses)}",
                    "control says the name does not exist",
                ),
            )
        return None
    if not control.addresses:
        return None  # the control named no address: nothing to compare the answer with
    if any(is_bogon(a) for a in dns.addresses) and not any(is_bogon(a) for a in control.addresses):
        return Classification(
            Kind.DNS_TAMPERING,
            (f"resolver answered bogon {', '.join(dns.addresses)}",),
        )
    return None


def _dns_consistent(m: TargetMeasurement) -> tuple[bool, str]:
    control = m.control_dns
    helper_dns = m.control.dns if m.control and m.control.usable else None
    # A control that resolved without naming an address says nothing about ours.
    references = [
        d for d in (control, helper_dns) if d is not None and d.failure is None and d.addresses
    ]
    if not references:
        return True, ""
    ours = set(m.dns.addresses)
    for reference in references:
        if ours & set(reference.addresses):
            return True, ""
    theirs = sorted({a for r in references for a in r.addresses})
    return False, f"resolver answered {', '.join(sorted(ours))}; control {', '.join(theirs)}"


def classify(m: TargetMeasurement) -> Classification:
    """Classify one target from its measurements (pure; table-tested)."""
    helper = m.control if m.control is not None and m.control.usable else None
    early = _dns_kind(m.dns, m.control_dns, helper, m.control)
    if early is not None:
        return early
    consistent, why = _dns_consistent(m)
    if not consistent:
        # Different addresses are normal for CDNs: accept them when the page is the same.
        http, control_http = m.http_request, helper.http_request if helper else None
        if (
            http is None
            or http.failure
            or control_http is None
            or control_http.failure
            or not http_matches(http, control_http)[0]
        ):
            return Classification(Kind.DNS_TAMPERING, (why, "no EDE in the answer"))
    if m.tcp_connect and not any(c.success for c in m.tcp_connect):
        failures = ", ".join(f"{c.ip}:{c.port} {c.failure}" for c in m.tcp_connect)
        if helper is None or not helper.tcp_connect:
            return Classification(
                Kind.UNDETERMINED,
                (f"every TCP connect failed ({failures})", missing_control(m.control, "TCP")),
                (Kind.TCP_BLOCKING, Kind.DOWN),
            )
        if any(c.success for c in helper.tcp_connect):
            return Classification(
                Kind.TCP_BLOCKING,
                (f"every TCP connect failed ({failures})", "the test helper connected"),
            )
        theirs = ", ".join(f"{c.ip}:{c.port} {c.failure}" for c in helper.tcp_connect)
        return Classification(
            Kind.DOWN,
            (f"every TCP connect failed ({failures})", f"the test helper's failed too ({theirs})"),
        )
    tls = m.tls_handshake
    if m.target.is_https and tls is not None and tls.failure is not None:
        control_tls = helper.tls_handshake if helper else None
        if helper is None or control_tls is None:
            return Classification(
                Kind.UNDETERMINED,
                (f"TLS handshake failed: {tls.failure}", missing_control(m.control, "TLS")),
                (Kind.TLS_INTERFERENCE, Kind.DOWN),
            )
        if control_tls.failure is None:
            return Classification(
                Kind.TLS_INTERFERENCE,
                (
                    f"TLS handshake with SNI {tls.server_name} failed: {tls.failure}",
                    "the test helper completed the handshake",
                ),
            )
        return Classification(
            Kind.DOWN, (f"TLS failed: {tls.failure}; helper too: {control_tls.failure}",)
        )
    http = m.http_request
    if http is None:
        return Classification(Kind.ACCESSIBLE, ("DNS and TCP succeeded; no HTTP step",))
    control_http = helper.http_request if helper else None
    if http.failure is not None:
        if control_http is None:
            return Classification(
                Kind.UNDETERMINED,
                (f"HTTP request failed: {http.failure}", missing_control(m.control, "HTTP")),
                (Kind.HTTP_DIFF, Kind.DOWN),
            )
        if control_http.failure is None:
            return Classification(
                Kind.HTTP_DIFF,
                (f"HTTP request failed: {http.failure}", "the test helper fetched the page"),
            )
        return Classification(
            Kind.DOWN, (f"HTTP failed: {http.failure}; helper too: {control_http.failure}",)
        )
    control_ok = control_http is not None and control_http.failure is None
    if http.status_code == 451 and not (
        control_ok and control_http and control_http.status_code == 451
    ):
        facts = ["HTTP 451 Unavailable For Legal Reasons"]
        if http.blocked_by:
            facts.append(f"Link rel=blocked-by: {http.blocked_by}")
        return Classification(Kind.HTTP_451, tuple(facts))
    if http.blockpage and not (
        control_ok and control_http and control_http.blockpage == http.blockpage
    ):
        return Classification(
            Kind.HTTP_BLOCKPAGE,
            (f"response matches blockpage fingerprint {http.blockpage}", f"title {http.title!r}"),
        )
    if control_ok and control_http is not None:
        same, difference = http_matches(http, control_http)
        if not same:
            return Classification(Kind.HTTP_DIFF, (difference,), weak=True)
        return Classification(Kind.ACCESSIBLE, ("response matches the test helper's",))
    facts = [f"HTTP {http.status_code}, {http.body_length} bytes"]
    if control_http is not None and control_http.failure:
        facts.append(f"the test helper failed ({control_http.failure}) but this network did not")
    else:
        facts.append(f"{missing_control(m.control, 'HTTP')}: an altered page could not be detected")
    return Classification(Kind.ACCESSIBLE, tuple(facts))
