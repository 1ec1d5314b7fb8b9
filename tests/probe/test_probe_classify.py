"""Table tests of the pure classifier: one row per way a page load can go."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.probe.classify import Kind, classify, http_matches
from clearwall.probe.dnsmeasure import DNSMeasurement, EDEInfo
from clearwall.probe.inputs import parse_target
from clearwall.probe.netmeasure import HTTPResponse, TCPConnect, TLSHandshake
from clearwall.probe.records import ControlMeasurement, TargetMeasurement

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
IP = "198.18.0.10"
OTHER = "198.19.255.1"


def dns(*addresses: str, failure: str | None = None, ede: int | None = None) -> DNSMeasurement:
    rcode = {"dns_nxdomain_error": "NXDOMAIN", "generic_timeout_error": None}.get(
        failure or "", "NOERROR"
    )
    return DNSMeasurement(
        resolver="udp://100.64.1.1:53",
        query_name="site.test",
        rcode=rcode,
        failure=failure,
        addresses=addresses,
        ede=(EDEInfo(ede, '{"j":"order 7"}'),) if ede else (),
        sde={"j": "order 7"} if ede else None,
    )


def tcp(ok: bool, failure: str = "connection_refused") -> tuple[TCPConnect, ...]:
    return (TCPConnect(IP, 443, ok, None if ok else failure),)


def tls(failure: str | None = None) -> TLSHandshake:
    return TLSHandshake(f"{IP}:443", "site.test", failure, failure is None)


def page(status: int = 200, title: str = "Site", length: int = 1000, **kw: object) -> HTTPResponse:
    return HTTPResponse("https://site.test/", f"{IP}:443", None, status, {}, title, length, **kw)  # type: ignore[arg-type]


def failed_http(failure: str) -> HTTPResponse:
    return HTTPResponse("https://site.test/", f"{IP}:443", failure)


GOOD_CONTROL = ControlMeasurement(dns(IP), tcp(True), tls(), page())
DOWN_CONTROL = ControlMeasurement(dns(IP), tcp(False), None, failed_http("connection_refused"))


def measure(
    probe_dns: DNSMeasurement,
    *,
    control_dns: DNSMeasurement | None = None,
    tcp_connect: tuple[TCPConnect, ...] = tcp(True),
    tls_handshake: TLSHandshake | None = None,
    http: HTTPResponse | None = None,
    control: ControlMeasurement | None = GOOD_CONTROL,
    url: str = "https://site.test/",
) -> TargetMeasurement:
    target = parse_target(url)
    if tls_handshake is None and target.is_https and http is not None and http.failure is None:
        tls_handshake = tls()
    return TargetMeasurement(
        target, T0, probe_dns, control_dns, tcp_connect, tls_handshake, http, control
    )


CASES: list[tuple[str, TargetMeasurement, Kind]] = [
    ("plain success", measure(dns(IP), control_dns=dns(IP), http=page()), Kind.ACCESSIBLE),
    (
        "ede 16 nxdomain",
        measure(dns(failure="dns_nxdomain_error", ede=16)),
        Kind.DNS_TRANSPARENT_BLOCK,
    ),
    ("ede 15 sinkhole answer", measure(dns("198.18.9.9", ede=15)), Kind.DNS_TRANSPARENT_BLOCK),
    (
        "ede without control",
        measure(dns(failure="dns_nxdomain_error", ede=18), control=None),
        Kind.DNS_TRANSPARENT_BLOCK,
    ),
    (
        "nxdomain, control resolves",
        measure(dns(failure="dns_nxdomain_error"), control_dns=dns(IP)),
        Kind.DNS_TAMPERING,
    ),
    (
        "timeout, control resolves",
        measure(dns(failure="generic_timeout_error"), control_dns=dns(IP)),
        Kind.DNS_TAMPERING,
    ),
    (
        "nxdomain both",
        measure(dns(failure="dns_nxdomain_error"), control_dns=dns(failure="dns_nxdomain_error")),
        Kind.DOWN,
    ),
    (
        "nxdomain no control",
        measure(dns(failure="dns_nxdomain_error"), control=None),
        Kind.UNDETERMINED,
    ),
    (
        "forged address",
        measure(
            dns(OTHER),
            control_dns=dns(IP),
            tcp_connect=(TCPConnect(OTHER, 443, False, "connection_refused"),),
        ),
        Kind.DNS_TAMPERING,
    ),
    (
        "bogon answer",
        measure(dns("127.0.0.1"), control_dns=dns("93.184.216.34"), control=None),
        Kind.DNS_TAMPERING,
    ),
    (
        "cdn: other address, same page",
        measure(dns(OTHER), control_dns=dns(IP), http=page()),
        Kind.ACCESSIBLE,
    ),
    (
        "tcp reset, helper connects",
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False)),
        Kind.TCP_BLOCKING,
    ),
    (
        "tcp fails everywhere",
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=DOWN_CONTROL),
        Kind.DOWN,
    ),
    (
        "tcp fails, no helper",
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=None),
        Kind.UNDETERMINED,
    ),
    (
        "tls timeout, helper ok",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tls_handshake=tls("generic_timeout_error"),
            http=failed_http("generic_timeout_error"),
        ),
        Kind.TLS_INTERFERENCE,
    ),
    (
        "tls bad cert, helper ok",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tls_handshake=tls("ssl_unknown_authority"),
            http=failed_http("ssl_unknown_authority"),
        ),
        Kind.TLS_INTERFERENCE,
    ),
    (
        "tls fails, no helper",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tls_handshake=tls("connection_reset"),
            http=failed_http("connection_reset"),
            control=None,
        ),
        Kind.UNDETERMINED,
    ),
    (
        "451 with link",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=page(451, "Blocked", 300, blocked_by="https://portal/o/1"),
        ),
        Kind.HTTP_451,
    ),
    (
        "site serves 451 itself",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=page(451),
            control=ControlMeasurement(dns(IP), tcp(True), tls(), page(451)),
        ),
        Kind.ACCESSIBLE,
    ),
    (
        "blockpage fingerprint",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=page(200, "Access denied", 500, blockpage="generic-title"),
            url="http://site.test/",
        ),
        Kind.HTTP_BLOCKPAGE,
    ),
    (
        "title differs",
        measure(dns(IP), control_dns=dns(IP), http=page(200, "Other")),
        Kind.HTTP_DIFF,
    ),
    (
        "body shrinks",
        measure(dns(IP), control_dns=dns(IP), http=page(200, "Site", 100)),
        Kind.HTTP_DIFF,
    ),
    (
        "http reset, helper ok",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=failed_http("connection_reset"),
            url="http://site.test/",
        ),
        Kind.HTTP_DIFF,
    ),
    (
        "no helper, page loads",
        measure(dns(IP), control_dns=dns(IP), http=page(), control=None),
        Kind.ACCESSIBLE,
    ),
    ("deadline exceeded", measure(dns(failure="probe_deadline_exceeded")), Kind.UNDETERMINED),
    (
        "helper unreachable",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tcp_connect=tcp(False),
            control=ControlMeasurement(failure="helper_unreachable"),
        ),
        Kind.UNDETERMINED,
    ),
]


@pytest.mark.parametrize(("measurement", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(measurement: TargetMeasurement, kind: Kind) -> None:
    result = classify(measurement)
    assert result.kind is kind, result.evidence
    assert result.evidence


REFUSED = "helper_refused: non-public address 10.0.0.1 (not measured)"
# The helper answered, but measured nothing past DNS (e.g. every address was private).
NOTHING_MEASURED = ControlMeasurement(dns(IP))

# A control that is missing (no helper, a helper that failed or refused, a step the helper
# did not take, a control resolver that named no address) is never read as a negative
# one: the result is undetermined (or rests on this network's own measurements) and the
# evidence says why the control is missing.
MISSING_CONTROL: list[tuple[str, TargetMeasurement, Kind, str]] = [
    (
        "tcp fails, helper refused",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tcp_connect=tcp(False),
            control=ControlMeasurement(dns(IP), failure=REFUSED),
        ),
        Kind.UNDETERMINED,
        REFUSED,
    ),
    (
        "tcp fails, helper made no connect",
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=NOTHING_MEASURED),
        Kind.UNDETERMINED,
        "made no TCP measurement",
    ),
    (
        "tcp fails, no helper",
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=None),
        Kind.UNDETERMINED,
        "no test helper",
    ),
    (
        "tls fails, helper refused",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tls_handshake=tls("connection_reset"),
            http=failed_http("connection_reset"),
            control=ControlMeasurement(dns(IP), failure=REFUSED),
        ),
        Kind.UNDETERMINED,
        REFUSED,
    ),
    (
        "tls fails, helper skipped tls",
        measure(
            dns(IP),
            control_dns=dns(IP),
            tls_handshake=tls("connection_reset"),
            http=failed_http("connection_reset"),
            control=ControlMeasurement(dns(IP), tcp(True)),
        ),
        Kind.UNDETERMINED,
        "made no TLS measurement",
    ),
    (
        "http fails, helper refused",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=failed_http("connection_reset"),
            url="http://site.test/",
            control=ControlMeasurement(dns(IP), failure=REFUSED),
        ),
        Kind.UNDETERMINED,
        REFUSED,
    ),
    (
        "http fails, helper skipped http",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=failed_http("connection_reset"),
            url="http://site.test/",
            control=ControlMeasurement(dns(IP), tcp(True)),
        ),
        Kind.UNDETERMINED,
        "made no HTTP measurement",
    ),
    (
        "dns fails, helper refused, no control resolver",
        measure(
            dns(failure="generic_timeout_error"),
            control=ControlMeasurement(dns(IP), failure=REFUSED),
        ),
        Kind.UNDETERMINED,
        REFUSED,
    ),
    (
        "page loads, helper refused",
        measure(
            dns(IP),
            control_dns=dns(IP),
            http=page(),
            control=ControlMeasurement(dns(IP), failure=REFUSED),
        ),
        Kind.ACCESSIBLE,
        REFUSED,
    ),
    (
        "control resolver named no address",
        measure(dns(IP), control_dns=dns(), http=page(), control=None),
        Kind.ACCESSIBLE,
        "no test helper",
    ),
    (
        "control resolver named no address, bogon answer",
        measure(dns("10.1.2.3"), control_dns=dns(), http=page(), control=None),
        Kind.ACCESSIBLE,
        "no test helper",
    ),
]


@pytest.mark.parametrize(
    ("measurement", "kind", "why"),
    [c[1:] for c in MISSING_CONTROL],
    ids=[c[0] for c in MISSING_CONTROL],
)
def test_a_missing_control_is_never_a_negative_one(
    measurement: TargetMeasurement, kind: Kind, why: str
) -> None:
    result = classify(measurement)
    assert result.kind is kind, result.evidence
    assert any(why in fact for fact in result.evidence), result.evidence
    # Only a control that was measured may be quoted as one.
    assert not any("also from the helper" in f or "helper too" in f for f in result.evidence)


def test_down_quotes_what_the_helper_measured() -> None:
    result = classify(
        measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=DOWN_CONTROL)
    )
    assert result.kind is Kind.DOWN
    assert any(f"{IP}:443 connection_refused" in f and "helper" in f for f in result.evidence)


def test_undetermined_names_what_it_cannot_separate() -> None:
    result = classify(measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False), control=None))
    assert set(result.candidates) == {Kind.TCP_BLOCKING, Kind.DOWN}
    assert result.accessible is None and result.blocking is None


def test_ooni_keys() -> None:
    assert (
        classify(measure(dns(IP), control_dns=dns(IP), tcp_connect=tcp(False))).blocking == "tcp_ip"
    )
    ok = classify(measure(dns(IP), control_dns=dns(IP), http=page()))
    assert ok.blocking is False and ok.accessible is True


def test_http_matches_threshold() -> None:
    assert http_matches(page(length=1000), page(length=700))[0]
    assert not http_matches(page(length=1000), page(length=699))[0]


FAILURES = st.sampled_from(
    [None, "dns_nxdomain_error", "generic_timeout_error", "connection_reset", "eof_error"]
)
ADDRESSES = st.lists(st.sampled_from([IP, OTHER, "127.0.0.1", "93.184.216.34"]), max_size=2)


@st.composite
def dns_results(draw: st.DrawFn) -> DNSMeasurement:
    failure = draw(FAILURES)
    ede = draw(st.one_of(st.none(), st.integers(0, 30)))
    return DNSMeasurement(
        "udp://r:53",
        "site.test",
        rcode="NOERROR" if failure is None else "NXDOMAIN",
        failure=failure,
        addresses=tuple(draw(ADDRESSES)) if failure is None else (),
        ede=(EDEInfo(ede, ""),) if ede is not None else (),
    )


@st.composite
def pages(draw: st.DrawFn) -> HTTPResponse | None:
    if draw(st.booleans()):
        return None
    failure = draw(FAILURES)
    if failure:
        return failed_http(failure)
    return page(
        draw(st.sampled_from([200, 404, 451])),
        draw(st.sampled_from(["Site", "Other", ""])),
        draw(st.integers(0, 2000)),
        blockpage=draw(st.sampled_from([None, "generic-title"])),
    )


@st.composite
def measurements(draw: st.DrawFn) -> TargetMeasurement:
    control = None
    if draw(st.booleans()):
        control = ControlMeasurement(
            draw(st.one_of(st.none(), dns_results())),
            tuple(
                TCPConnect(IP, 443, ok, None if ok else "x")
                for ok in draw(st.lists(st.booleans(), max_size=2))
            ),
            draw(st.one_of(st.none(), st.builds(tls, FAILURES))),
            draw(pages()),
            draw(st.sampled_from([None, "helper_failure"])),
        )
    return TargetMeasurement(
        parse_target(draw(st.sampled_from(["https://site.test/", "http://site.test/"]))),
        T0,
        draw(dns_results()),
        draw(st.one_of(st.none(), dns_results())),
        tuple(
            TCPConnect(IP, 443, ok, None if ok else "x")
            for ok in draw(st.lists(st.booleans(), max_size=2))
        ),
        draw(st.one_of(st.none(), st.builds(tls, FAILURES))),
        draw(pages()),
        control,
    )


@given(measurements())
@settings(max_examples=400)
def test_classify_is_total_and_ede_always_wins(m: TargetMeasurement) -> None:
    result = classify(m)
    assert result.evidence
    assert (result.kind is Kind.UNDETERMINED) == bool(result.candidates)
    if m.dns.block_ede is not None:
        assert result.kind is Kind.DNS_TRANSPARENT_BLOCK
    elif result.kind is Kind.DNS_TRANSPARENT_BLOCK:
        raise AssertionError("transparent block without an EDE 15-18")


def test_content_only_difference_is_weak() -> None:
    assert classify(measure(dns(IP), control_dns=dns(IP), http=page(200, "Other"))).weak
    reset = measure(dns(IP), control_dns=dns(IP), http=failed_http("connection_reset"))
    assert not classify(reset).weak
