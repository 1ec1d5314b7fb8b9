"""With no upstream configured, the gateway forwards to the system's resolvers, never itself."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearwall.config import DNSConfig, HostPort, UpstreamConfig
from clearwall.dnsserver.gateway import build_gateway
from clearwall.dnsserver.resolvconf import default_upstreams, nameservers
from clearwall.errors import ConfigError

# A loopback address of our own (all of 127/8 is local on Linux), so port 53 is free.
OURS = f"127.53.{os.getpid() % 256}.{(os.getpid() // 256) % 250 + 1}"


def hp(text: str) -> HostPort:
    return HostPort.parse(text, 53)


@pytest.mark.parametrize(
    ("resolv_conf", "listen", "servers", "expected"),
    [
        # systemd's stub is used as resolv.conf says: it is not this gateway
        ("nameserver 127.0.0.53\noptions edns0\n", ["127.0.0.1:8053"], [], ["127.0.0.53:53"]),
        (
            "# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example\n",
            ["127.0.0.1:8053"],
            [],
            ["192.0.2.53:53", "[2001:db8::53]:53"],
        ),
        # the gateway's own listen address on port 53 is left out ...
        ("nameserver 127.0.0.1\nnameserver 192.0.2.53\n", ["127.0.0.1:53"], [], ["192.0.2.53:53"]),
        # ... and so is any local address when it listens on a wildcard on port 53
        ("nameserver 127.0.0.1\nnameserver 192.0.2.53\n", ["0.0.0.0:53"], [], ["192.0.2.53:53"]),
        ("nameserver ::1\nnameserver 192.0.2.53\n", ["[::]:53"], [], ["192.0.2.53:53"]),
        # the same address on another port is another server
        ("nameserver 127.0.0.1\n", ["127.0.0.1:8053"], [], ["127.0.0.1:53"]),
        # configured servers win; the file is not read at all
        (None, ["127.0.0.1:8053"], ["192.0.2.1:5353"], ["192.0.2.1:5353"]),
        # nothing usable: a clear error naming the option
        ("", ["127.0.0.1:8053"], [], "gives no resolver"),
        ("nameserver 127.0.0.1\n", ["127.0.0.1:53"], [], "but this gateway itself (127.0.0.1:53)"),
        (None, ["127.0.0.1:8053"], [], "cannot be read (No such file or directory)"),
    ],
)
def test_default_upstreams(
    tmp_path: Path,
    resolv_conf: str | None,
    listen: list[str],
    servers: list[str],
    expected: list[str] | str,
) -> None:
    path = tmp_path / "resolv.conf"
    if resolv_conf is not None:
        path.write_text(resolv_conf)
    config = DNSConfig(
        listen=tuple(hp(x) for x in listen),
        upstream=UpstreamConfig(servers=tuple(hp(x) for x in servers), resolv_conf=path),
    )
    if isinstance(expected, str):
        with pytest.raises(ConfigError) as info:
            default_upstreams(config)
        assert expected in str(info.value) and "[dns.upstream] servers" in str(info.value)
        return
    upstreams = default_upstreams(config)
    assert [str(s) for s in upstreams.servers] == expected
    assert upstreams.source == ("[dns.upstream] servers" if servers else str(path))


_ADDRESS = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["fe80::1%eth0", "https://dns.example/dns-query", "not-an-address"]),
)
_LINE = st.one_of(
    st.builds(
        lambda a, pad: f"{pad}nameserver{pad or ' '}{a}", _ADDRESS, st.sampled_from(["", " ", "\t"])
    ),
    st.builds(lambda a: f"nameserver {a} # trailing words", _ADDRESS),
    st.builds(lambda a, c: f"{c}nameserver {a}", _ADDRESS, st.sampled_from(["#", ";"])),
    st.sampled_from(
        [
            "",
            "nameserver",
            "  ",
            "search example.test corp.test",
            "domain example.test",
            "options edns0 rotate timeout:2 ndots:3",
            "NAMESERVER 192.0.2.1",
            "nameservers 192.0.2.2",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30).filter(
        lambda t: "\n" not in t and "\r" not in t
    ),
)


@given(lines=st.lists(_LINE, max_size=8))
def test_nameserver_lines_are_read_as_dnspython_reads_them(lines: list[str]) -> None:
    """The gateway reads resolv.conf without importing dns.resolver (13 MiB of memory):
    the addresses it takes are the ones dnspython's parser takes, in the same order, and
    a file dnspython finds no nameserver in is one it finds none in."""
    import io

    import dns.resolver

    text = "\n".join(lines) + "\n"
    resolver = dns.resolver.Resolver(configure=False)
    try:
        resolver.read_resolv_conf(io.StringIO(text))
    except dns.resolver.NoResolverConfiguration:
        assert not nameservers(text)
        return
    except ValueError:  # dnspython refuses the whole file for one address it cannot use
        assert any(not _usable(a) for a in nameservers(text))
        return
    except Exception:  # a domain or search name dnspython cannot parse: not ours to judge
        return
    assert nameservers(text) == [str(ns) for ns in resolver.nameservers]


def _usable(address: str) -> bool:
    try:
        hp(address)
    except ValueError:
        return address.startswith("https://")
    return True


async def _serve_names(host: str) -> asyncio.DatagramTransport:
    """A tiny resolver on ``host``:53 answering every A query with 192.0.2.7."""

    class Answer(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            reply.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7")
            )
            self.transport.sendto(reply.to_wire(), addr)  # type: ignore[attr-defined]

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Answer, local_addr=(host, 53)
    )
    return transport  # type: ignore[return-value]


async def test_no_upstream_configured_forwards_to_resolv_conf(tmp_path: Path) -> None:
    """A real gateway on loopback with the default (empty) upstream list, a resolv.conf
    naming a resolver on port 53, a real DNS client: the answer comes from that resolver."""
    resolver = await _serve_names(OURS)
    (tmp_path / "resolv.conf").write_text(f"nameserver {OURS}\n")
    config = dataclasses.replace(
        DNSConfig(listen=(HostPort("127.0.0.1", 0),)),
        upstream=UpstreamConfig(resolv_conf=tmp_path / "resolv.conf", timeout=1.0),
    )
    gw = build_gateway(config)
    await gw.start()
    try:
        host, port = gw.server.addresses[0]
        query = dns.message.make_query("www.example.test", "A")
        reply = await dns.asyncquery.udp(query, host, port=port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [r.to_text() for rrset in reply.answer for r in rrset] == ["192.0.2.7"]
    finally:
        await gw.stop()
        resolver.close()
