"""DNS measurements: one query through a resolver, recorded with its EDE and SDE evidence."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from clearwall.errors import ProbeError

TRANSPORTS: tuple[str, ...] = ("udp", "tcp", "tls", "https")
DEFAULT_PORTS: dict[str, int] = {"udp": 53, "tcp": 53, "tls": 853, "https": 443}


@dataclass(frozen=True, slots=True)
class DNSServer:
    """A resolver to ask: address, port and transport (udp, tcp, tls for DoT, https for
    DoH). An encrypted resolver's certificate is verified: against ``name`` (DoT's
    ``#name``, DoH's URL host; else the address) and ``ca_file`` (else the system's CAs).
    """

    host: str
    port: int = 53
    transport: str = "udp"
    name: str = ""
    path: str = ""  # DoH: the URL's path, e.g. /dns-query
    ca_file: str | None = None

    @property
    def url(self) -> str:
        """The DoH URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{self.path or '/dns-query'}"

    def __str__(self) -> str:
        if self.transport == "https":
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        name = f"#{self.name}" if self.name and self.name != self.host else ""
        return f"{self.transport}://{host}:{self.port}{name}"


def parse_server(text: str, *, default_transport: str = "udp") -> DNSServer:
    """Parse ``[udp|tcp|tls://]IP[:PORT]`` (IPv6 as ``[::1]:53``; DoT may end in
    ``#name``, the name its certificate must hold) or a DoH URL ``https://host[:PORT]/path``
    into a DNSServer."""
    raw = text.strip()
    transport = default_transport
    if "://" in raw:
        transport, raw = raw.split("://", 1)
        transport = transport.lower()
    if transport not in TRANSPORTS:
        raise ProbeError(f"unknown DNS transport {transport!r} in {text!r} (udp, tcp, tls, https)")
    if transport == "https":
        import urllib.parse

        try:
            url = urllib.parse.urlsplit(text.strip())
            url_port = url.port
        except ValueError as exc:
            raise ProbeError(f"invalid DoH URL {text!r}: {exc}") from exc
        if not url.hostname:
            raise ProbeError(f"no host in DoH URL {text!r}")
        return DNSServer(url.hostname, url_port or 443, "https", url.hostname, url.path)
    name = ""
    if transport == "tls" and "#" in raw:
        raw, name = raw.split("#", 1)
    port = DEFAULT_PORTS[transport]
    host = raw
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        port = _port(port_text, text)
    if not host:
        raise ProbeError(f"no address in resolver {text!r}")
    return DNSServer(host, port, transport, name)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProbeError(f"invalid port in {whole!r}")
    return int(text)


def system_resolver() -> DNSServer:
    """The first nameserver of the system's resolver configuration."""
    try:
        servers = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration as exc:
        raise ProbeError("no system resolver configured; pass --resolver") from exc
    if not servers:
        raise ProbeError("no system resolver configured; pass --resolver")
    return DNSServer(str(servers[0]), 53, "udp")


@dataclass(frozen=True, slots=True)
class EDEInfo:
    """One Extended DNS Error option (RFC 8914): info code and EXTRA-TEXT."""

    code: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class DNSMeasurement:
    """What one resolver answered for one name, in OONI-like terms plus EDE/SDE.

    ``failure`` uses OONI's failure strings (``dns_nxdomain_error``,
    ``generic_timeout_error``, ...) and is None for a NOERROR answer.
    """

    resolver: str
    query_name: str
    query_type: str = "A"
    rcode: str | None = None
    failure: str | None = None
    addresses: tuple[str, ...] = ()
    cnames: tuple[str, ...] = ()
    ttl: int | None = None
    ede: tuple[EDEInfo, ...] = ()
    sde: dict[str, Any] | None = field(default=None, hash=False)
    t: float = 0.0

    @property
    def block_ede(self) -> EDEInfo | None:
        """The first EDE whose code says the answer is a policy block (15-18)."""
        for info in self.ede:
            if 15 <= info.code <= 18:
                return info
        return None

    def to_json(self) -> dict[str, Any]:
        """The measurement as a JSON-compatible dict."""
        return {
            "resolver": self.resolver,
            "query_name": self.query_name,
            "query_type": self.query_type,
            "rcode": self.rcode,
            "failure": self.failure,
            "addresses": list(self.addresses),
            "cnames": list(self.cnames),
            "ttl": self.ttl,
            "ede": [{"info_code": e.code, "extra_text": e.text} for e in self.ede],
            "sde": self.sde,
            "t": round(self.t, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DNSMeasurement:
        """Rebuild a measurement from ``to_json`` output (e.g. the test helper's)."""
        return cls(
            resolver=str(data.get("resolver", "")),
            query_name=str(data.get("query_name", "")),
            query_type=str(data.get("query_type", "A")),
            rcode=data.get("rcode"),
            failure=data.get("failure"),
            addresses=tuple(str(a) for a in data.get("addresses") or ()),
            cnames=tuple(str(c) for c in data.get("cnames") or ()),
            ttl=data.get("ttl"),
            ede=tuple(
                EDEInfo(int(e.get("info_code", 0)), str(e.get("extra_text") or ""))
                for e in data.get("ede") or ()
            ),
            sde=data.get("sde") if isinstance(data.get("sde"), dict) else None,
            t=float(data.get("t") or 0.0),
        )


def literal(address: str) -> DNSMeasurement:
    """The stand-in DNS record of a target whose host is an IP literal (nothing asked)."""
    return DNSMeasurement(
        resolver="none (IP literal)", query_name=address, rcode=None, addresses=(address,)
    )


def parse_sde(text: str) -> dict[str, Any] | None:
    """The Structured DNS Error JSON object carried in an EXTRA-TEXT, or None.

    The IETF dnsop draft puts a JSON object (keys such as ``c`` contact, ``j``
    justification, ``o`` organization) in the EDE EXTRA-TEXT. The probe records it as
    evidence only: a claim in an answer proves nothing about the published log.
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def summarize(
    response: dns.message.Message, server: DNSServer, name: str, qtype: str, elapsed: float
) -> DNSMeasurement:
    """Turn a parsed DNS response into a measurement record (pure)."""
    rcode = dns.rcode.to_text(response.rcode())
    addresses: list[str] = []
    cnames: list[str] = []
    ttls: list[int] = []
    for rrset in response.answer:
        ttls.append(rrset.ttl)
        if rrset.rdtype == dns.rdatatype.CNAME:
            cnames.extend(str(rdata.target).rstrip(".").lower() for rdata in rrset)
        elif rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            addresses.extend(str(rdata) for rdata in rrset)
    ede: list[EDEInfo] = []
    sde: dict[str, Any] | None = None
    for option in response.options:
        if isinstance(option, dns.edns.EDEOption):
            text = option.text or ""
            ede.append(EDEInfo(int(option.code), text))
            if sde is None:
                sde = parse_sde(text)
    failure: str | None = None
    if rcode == "NXDOMAIN":
        failure = "dns_nxdomain_error"
    elif rcode == "REFUSED":
        failure = "dns_refused_error"
    elif rcode == "SERVFAIL":
        failure = "dns_server_failure"
    elif rcode != "NOERROR":
        failure = f"dns_{rcode.lower()}_error"
    elif not addresses:
        failure = "dns_no_answer"
    return DNSMeasurement(
        resolver=str(server),
        query_name=name,
        query_type=qtype,
        rcode=rcode,
        failure=failure,
        addresses=tuple(addresses),
        cnames=tuple(cnames),
        ttl=min(ttls) if ttls else None,
        ede=tuple(ede),
        sde=sde,
        t=elapsed,
    )


def failure_name(exc: BaseException) -> str:
    """OONI-style failure string for an exception raised while measuring."""
    if isinstance(exc, dns.exception.Timeout | TimeoutError):
        return "generic_timeout_error"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError):
        return "connection_reset"
    if isinstance(exc, EOFError | dns.query.UnexpectedSource):
        return "eof_error"
    if isinstance(exc, dns.exception.FormError | dns.message.ShortHeader):
        return "dns_bogus_response"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"os_error_{exc.errno}"
    return f"unknown_failure: {type(exc).__name__}: {exc}"


async def measure_dns(
    name: str, server: DNSServer, *, qtype: str = "A", timeout: float = 5.0
) -> DNSMeasurement:
    """Ask ``server`` for ``name``; never raises for network trouble, records it instead.

    UDP answers that come back truncated are retried over TCP (RFC 7766).
    """
    query = dns.message.make_query(
        dns.name.from_text(name), qtype, use_edns=0, payload=1232, want_dnssec=False
    )
    query.flags |= dns.flags.RD
    start = time.monotonic()
    try:
        response = await _send(query, server, timeout)
        if server.transport == "udp" and response.flags & dns.flags.TC:
            remaining = max(0.1, timeout - (time.monotonic() - start))
            response = await _send(query, DNSServer(server.host, server.port, "tcp"), remaining)
    except Exception as exc:  # network trouble is a finding, not a crash
        return DNSMeasurement(
            resolver=str(server),
            query_name=name,
            query_type=qtype,
            failure=failure_name(exc),
            t=time.monotonic() - start,
        )
    return summarize(response, server, name, qtype, time.monotonic() - start)


async def _send(
    query: dns.message.Message, server: DNSServer, timeout: float
) -> dns.message.Message:
    if server.transport == "tcp":
        return await dns.asyncquery.tcp(query, server.host, timeout=timeout, port=server.port)
    if server.transport in ("tls", "https"):
        from clearwall.probe.netmeasure import make_ssl_context

        context = make_ssl_context(server.ca_file)
        if server.transport == "https":
            return await dns.asyncquery.https(query, server.url, timeout=timeout, verify=context)
        context.set_alpn_protocols(["dot"])
        return await dns.asyncquery.tls(
            query,
            server.host,
            timeout=timeout,
            port=server.port,
            ssl_context=context,
            server_hostname=server.name or server.host,
        )
    return await dns.asyncquery.udp(
        query, server.host, timeout=timeout, port=server.port, ignore_unexpected=True
    )
