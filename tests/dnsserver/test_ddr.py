"""DDR (RFC 9462): _dns.resolver.arpa SVCB answers name the encrypted listeners."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from clearwall.dnsserver.gateway import Gateway
from dnsserver.conftest import dns_config
from dnsserver.encrypted import TLSFiles, encrypted_config, policy, port, tls_files
from dnsserver.upstreams import NSD


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


async def ask(gw: Gateway, rdtype: str, tcp: bool = False) -> dns.message.Message:
    host, udp_port = gw.server.addresses[0]
    q = dns.message.make_query("_dns.resolver.arpa", rdtype)
    send = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await send(q, host, port=udp_port, timeout=3)  # type: ignore[operator,no-any-return]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_svcb_answers_name_each_listener(
    nsd: NSD, files: TLSFiles, gateway_factory, tcp: bool
) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(encrypted_config(nsd.port, files), policy())
    r = await ask(gw, "SVCB", tcp)
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 1
    records = sorted(r.answer[0], key=lambda rd: rd.priority)
    assert [rd.priority for rd in records] == [1, 2, 3]
    assert {rd.target.to_text() for rd in records} == {"clearwall.localhost."}
    texts = [rd.to_text() for rd in records]
    assert f'alpn="dot" port="{port(gw, "dot")}" ipv4hint="127.0.0.1"' in texts[0]
    assert f'alpn="h2,http/1.1" port="{port(gw, "doh")}"' in texts[1]
    assert 'dohpath="/dns-query{?dns}"' in texts[1]
    assert f'alpn="doq" port="{port(gw, "doq")}"' in texts[2]


async def test_other_types_get_nodata(nsd: NSD, files: TLSFiles, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(encrypted_config(nsd.port, files), policy())
    r = await ask(gw, "A")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


async def test_no_ddr_without_encrypted_listeners(nsd: NSD, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(dns_config(nsd.port), policy())
    assert "ddr" not in gw.handlers
    r = await ask(gw, "SVCB")
    assert not any(rrset.rdtype == dns.rdatatype.SVCB for rrset in r.answer)
