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

from clearwall.config import DNSConfig, HostPort, UpstreamConfig
from clearwall.dnsserver.gateway import build_gateway
from clearwall.dnsserver.resolvconf import default_upstreams
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
        (None, ["127.0.0.1:8053"], [], "cannot open"),
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
