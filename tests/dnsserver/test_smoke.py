"""End-to-end basics: forwarding through the chain to a real nsd, over UDP and TCP."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype

from dnsserver.conftest import dns_config
from dnsserver.upstreams import NSD


async def test_forwards_udp_and_tcp(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    q = dns.message.make_query("www.example.test", "A")
    r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
    assert r.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]
    r2 = await dns.asyncquery.tcp(
        dns.message.make_query("WWW.Example.TEST", "AAAA"), host, port=port, timeout=2
    )
    assert r2.question[0].name.to_text() == "WWW.Example.TEST."
    assert [rr.to_text() for rr in r2.answer[0]] == ["2001:db8::1"]
