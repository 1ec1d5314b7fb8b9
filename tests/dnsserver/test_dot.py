"""DNS over TLS (RFC 7858) end to end: kdig and dnspython against the real listener."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import ssl
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from clearwall.dnsserver.gateway import Gateway
from dnsserver.encrypted import (
    NAME,
    TLSFiles,
    client_context,
    encrypted_config,
    kdig,
    policy,
    port,
    tls_files,
    tls_socket,
)
from dnsserver.helpers import ede
from dnsserver.upstreams import NSD


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def gw(nsd: NSD, files: TLSFiles, gateway_factory) -> Gateway:  # type: ignore[no-untyped-def]
    return await gateway_factory(encrypted_config(nsd.port, files), policy())  # type: ignore[no-any-return]


def dot_query(gw: Gateway, files: TLSFiles, msg: dns.message.Message) -> dns.message.Message:
    """One query with dnspython's DoT client, verifying the certificate and its name."""
    return dns.query.tls(
        msg,
        "127.0.0.1",
        port=port(gw, "dot"),
        timeout=5,
        ssl_context=client_context(files, ["dot"]),
        server_hostname=NAME,
    )


async def test_kdig_tls_blocked_and_allowed(gw: Gateway, files: TLSFiles) -> None:
    loop = asyncio.get_running_loop()
    blocked = await loop.run_in_executor(None, kdig, gw, files, "+tls", "court.test")
    assert "status: NXDOMAIN" in blocked and "EDE: 16 (Censored)" in blocked
    assert '"j":"Order 1' in blocked and "TLS1.3" in blocked
    allowed = await loop.run_in_executor(None, kdig, gw, files, "+tls", "www.example.test")
    assert "status: NOERROR" in allowed and "192.0.2.1" in allowed
    # kdig pads its TLS queries, and the reply is padded to the 468-octet block.
    assert "PADDING" in allowed and "Received 468 B" in allowed


async def test_dnspython_tls_blocked_allowed_and_repeated(gw: Gateway, files: TLSFiles) -> None:
    loop = asyncio.get_running_loop()

    def ask(name: str) -> dns.message.Message:
        return dot_query(gw, files, dns.message.make_query(name, "A", use_edns=0))

    for _ in range(3):  # the repeats come from the stream fast path
        r = await loop.run_in_executor(None, ask, "malware.test")
        assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 15  # type: ignore[index]
        r = await loop.run_in_executor(None, ask, "www.example.test")
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.1"


@pytest.mark.parametrize(
    ("use_edns", "padded"),
    [(0, True), (False, False)],
    ids=["edns: padded to 468", "no edns: never padded"],
)
async def test_padding_block_length(
    gw: Gateway, files: TLSFiles, use_edns: int | bool, padded: bool
) -> None:
    loop = asyncio.get_running_loop()
    for name in ("www.example.test", "court.test", "nxdomain.example.test", "many.example.test"):
        msg = dns.message.make_query(name, "A", use_edns=use_edns)
        r = await loop.run_in_executor(None, dot_query, gw, files, msg)
        size = len(r.to_wire())
        has_padding = any(o.otype == dns.edns.OptionType.PADDING for o in r.options)
        assert has_padding is padded
        assert (size % 468 == 0) is padded or size < 468, (name, size)


async def test_plain_udp_and_tcp_are_never_padded(gw: Gateway) -> None:
    host, udp_port = gw.server.addresses[0]
    msg = dns.message.make_query(
        "www.example.test", "A", use_edns=0, options=[dns.edns.GenericOption(12, b"\0" * 20)]
    )
    for send in (dns.asyncquery.udp, dns.asyncquery.tcp):
        r = await send(msg, host, port=udp_port, timeout=3)  # type: ignore[operator]
        assert not any(o.otype == dns.edns.OptionType.PADDING for o in r.options)


def _pipelined(gw: Gateway, files: TLSFiles, count: int) -> dict[int, int]:
    """Send ``count`` queries at once on one TLS connection; the rcode of each ID."""
    names = ["www.example.test", "court.test", "malware.test", "mail.example.test"]
    wires = []
    for i in range(count):
        msg = dns.message.make_query(names[i % len(names)], "A", use_edns=0)
        msg.id = i
        wire = msg.to_wire()
        wires.append(len(wire).to_bytes(2, "big") + wire)
    ctx = client_context(files, ["dot"])
    got: dict[int, int] = {}
    with tls_socket(port(gw, "dot"), ctx) as conn:
        conn.sendall(b"".join(wires))
        buf = b""
        while len(got) < count:
            chunk = conn.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                size = int.from_bytes(buf[:2], "big")
                reply = dns.message.from_wire(buf[2 : 2 + size])
                got[reply.id] = reply.rcode()
                buf = buf[2 + size :]
    return got


async def test_pipelining_on_one_connection(gw: Gateway, files: TLSFiles) -> None:
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, _pipelined, gw, files, 200)
    assert sorted(got) == list(range(200))
    assert {got[i] for i in range(1, 200, 4)} == {dns.rcode.NXDOMAIN}
    assert {got[i] for i in range(0, 200, 4)} == {dns.rcode.NOERROR}


async def test_sde_full_over_tls_where_udp_compacts_it(gw: Gateway, files: TLSFiles) -> None:
    loop = asyncio.get_running_loop()
    msg = dns.message.make_query("long.test", "A", use_edns=0, payload=512)
    host, udp_port = gw.server.addresses[0]
    for _ in range(2):  # again: the fast path must not hand the UDP rendering to TLS
        udp = await dns.asyncquery.udp(msg, host, port=udp_port, timeout=3)
        assert "j" not in json.loads(ede(udp)[1])  # type: ignore[index]
        tls = await loop.run_in_executor(None, dot_query, gw, files, msg)
        assert json.loads(ede(tls)[1])["j"].startswith("x" * 900)  # type: ignore[index]


def _resumed(gw: Gateway, files: TLSFiles) -> tuple[bool, bool]:
    ctx = client_context(files, ["dot"])
    query = dns.message.make_query("www.example.test", "A").to_wire()
    framed = len(query).to_bytes(2, "big") + query
    session = None
    reused = []
    for _ in range(2):
        with tls_socket(port(gw, "dot"), ctx, session) as conn:
            conn.sendall(framed)
            conn.recv(65536)  # the reply; TLS 1.3 tickets arrive with it
            reused.append(conn.session_reused)
            session = conn.session
    return reused[0], reused[1]


async def test_tls_session_resumption(gw: Gateway, files: TLSFiles) -> None:
    first, second = await asyncio.get_running_loop().run_in_executor(None, _resumed, gw, files)
    assert (first, second) == (False, True)


def _handshake(gw: Gateway, files: TLSFiles, version: ssl.TLSVersion) -> str:
    ctx = client_context(files, ["dot"])
    ctx.maximum_version = version
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        with tls_socket(port(gw, "dot"), ctx) as conn:
            return str(conn.version())
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


async def test_tls_13_only(gw: Gateway, files: TLSFiles) -> None:
    """The SDE draft relies on TLS 1.3 or later (security considerations)."""
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, _handshake, gw, files, ssl.TLSVersion.TLSv1_3) == (
        "TLSv1.3"
    )
    refused = await loop.run_in_executor(None, _handshake, gw, files, ssl.TLSVersion.TLSv1_2)
    assert refused in ("SSLError", "SSLEOFError", "ConnectionResetError")


def _raw_then_query(gw: Gateway, files: TLSFiles, payload: bytes, in_tls: bool) -> str:
    """Send ``payload`` (as TLS application data, or raw in place of a handshake); then
    check the listener still answers a good query on a fresh connection."""
    ctx = client_context(files, ["dot"])
    outcome = "open"
    if in_tls:
        with tls_socket(port(gw, "dot"), ctx) as conn:
            conn.sendall(payload)
            try:
                data = conn.recv(65536)
                outcome = "closed" if not data else f"reply rcode {data[5] & 0x0F}"
            except (ssl.SSLError, OSError):
                outcome = "closed"
    else:
        with socket.create_connection(("127.0.0.1", port(gw, "dot")), timeout=5) as raw:
            raw.sendall(payload)
            try:
                outcome = "closed" if not raw.recv(65536) else "answered garbage"
            except OSError:
                outcome = "closed"
    good = dns.message.make_query("www.example.test", "A")
    assert dot_query(gw, files, good).rcode() == dns.rcode.NOERROR
    return outcome


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(2, "big") + body


QUERY = dns.message.make_query("www.example.test", "A").to_wire()


@pytest.mark.parametrize(
    ("payload", "in_tls", "outcome"),
    [
        (os.urandom(300), False, "closed"),  # garbage instead of a TLS record
        (b"\x16\x03\x01\xff\xff" + os.urandom(64), False, "closed"),  # a broken ClientHello
        (_framed(b"\x01\x02\x03"), True, "closed"),  # a "message" shorter than a header
        (_framed(QUERY[:12] + b"\xff\xff"), True, "reply rcode 1"),  # header, bad body
        (_framed(QUERY[:2] + b"\x80" + QUERY[3:]), True, "open"),  # a response: ignored
    ],
    ids=["garbage", "bad-hello", "short-message", "formerr", "response"],
)
async def test_malformed_input(
    gw: Gateway, files: TLSFiles, payload: bytes, in_tls: bool, outcome: str
) -> None:
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, _raw_then_query, gw, files, payload, in_tls)
    assert got == outcome or (outcome == "open" and got == "closed")


async def test_connection_table_evicts_idle_longest(
    nsd: NSD, files: TLSFiles, gateway_factory
) -> None:  # type: ignore[no-untyped-def]
    config = encrypted_config(nsd.port, files, max_tcp_connections=2)
    gw = await gateway_factory(config, policy())
    ctx = client_context(files, ["dot"])
    loop = asyncio.get_running_loop()

    def three() -> list[bytes]:
        conns = []
        for _ in range(3):
            conn = tls_socket(port(gw, "dot"), ctx)
            conn.sendall(_framed(QUERY))
            conn.recv(65536)
            conns.append(conn)
        first = conns[0]
        try:
            first.sendall(_framed(QUERY))
            out = [first.recv(65536)]
        except (ssl.SSLError, OSError):
            out = [b""]
        for conn in conns:
            conn.close()
        return out

    assert await loop.run_in_executor(None, three) == [b""]
    assert gw.metrics.tcp_evicted >= 1


async def test_idle_connection_is_closed(nsd: NSD, files: TLSFiles, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_factory(encrypted_config(nsd.port, files, tcp_idle_timeout=0.3), policy())
    ctx = client_context(files, ["dot"])

    def idle() -> bytes:
        with tls_socket(port(gw, "dot"), ctx) as conn:
            try:
                return conn.recv(1)
            except (ssl.SSLError, OSError):
                return b""

    assert await asyncio.get_running_loop().run_in_executor(None, idle) == b""


def test_bad_certificate_fails_the_start(tmp_path: Path, nsd: NSD, files: TLSFiles) -> None:
    from clearwall.dnsserver.workers import prepare_tls
    from clearwall.errors import ConfigError

    other = tls_files(tmp_path)  # a key that does not match the certificate
    config = dataclasses.replace(encrypted_config(nsd.port, files), tls_key=str(other.key))
    with pytest.raises(ConfigError, match="tls_cert/tls_key"):
        prepare_tls(config)
