"""Every record type reaches the client: HTTPS, SVCB, CAA, TLSA and TYPE64-97 through a
real nsd, over UDP and TCP, fresh and from the cache, in any question case.

Issue 14, section 1: the upstream reply check lowercased QTYPE with the name, so every
type whose number is an ASCII capital (65-90) timed out as SERVFAIL + EDE 22.
"""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver.conftest import dns_config
from dnsserver.upstreams import GENERIC_TYPES, NSD, TYPED

TYPES = [*TYPED, *(dns.rdatatype.to_text(t) for t in GENERIC_TYPES)]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_every_type_is_answered_fresh_and_cached(
    nsd: NSD, gateway_factory, tcp: bool
) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    for rdtype in TYPES:
        for name in ("types.example.test", "TyPeS.ExAmPlE.TeSt", "types.example.test"):
            msg = dns.message.make_query(name, rdtype, use_edns=0)
            r = await query(msg, host, port=port, timeout=2)
            assert r.rcode() == dns.rcode.NOERROR, rdtype
            assert [rrset.rdtype for rrset in r.answer] == [dns.rdatatype.from_text(rdtype)]
            assert r.question[0].name.to_text() == name + "."
    # One miss per type: the second and third asks were hits, mixed case included.
    assert gw.metrics.cache_misses == len(TYPES)
    assert gw.metrics.cache_hits == len(TYPES) * 2
    assert gw.metrics.upstream_failures == 0
