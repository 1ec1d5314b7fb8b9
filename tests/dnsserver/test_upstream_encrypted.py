"""Encrypted upstreams: a gateway forwarding over DoT and DoH to a second, real gateway
(itself forwarding to nsd), certificates verified, connections reused, failover across
kinds; and Unbound's tls-port as a DoT upstream."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import time
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from tests.ports import free_port

from clearwall.config import EncryptedUpstream, HostPort, UpstreamConfig, load_config
from clearwall.dnsserver.gateway import Gateway
from clearwall.errors import ConfigError
from dnsserver.conftest import dns_config
from dnsserver.encrypted import NAME, TLSFiles, encrypted_config, policy, port, tls_files
from dnsserver.helpers import ask, ede
from dnsserver.upstreams import NSD, UNBOUND_BINARY


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Another self-signed certificate: trusting it does not make the first one valid."""
    return tls_files(tmp_path_factory.mktemp("stranger"))


@pytest.fixture
async def back(nsd: NSD, files: TLSFiles, gateway_factory) -> Gateway:  # type: ignore[no-untyped-def]
    """The upstream: a gateway with DoT and DoH, forwarding to nsd, blocking nothing."""
    return await gateway_factory(encrypted_config(nsd.port, files))  # type: ignore[no-any-return]


def front_config(servers: list[str], ca_file: str) -> object:
    base = dns_config(0)
    upstream = UpstreamConfig(
        servers=tuple(
            EncryptedUpstream.parse(s) if "://" in s else HostPort.parse(s, 53) for s in servers
        ),
        timeout=2.0,
        attempts=1,
        ca_file=ca_file,
    )
    return dataclasses.replace(base, upstream=upstream)


def dot(back: Gateway, name: str = NAME) -> str:
    return f"tls://127.0.0.1:{port(back, 'dot')}#{name}"


def doh(back: Gateway) -> str:
    return f"https://127.0.0.1:{port(back, 'doh')}/dns-query"


@pytest.mark.parametrize("kind", ["dot", "doh"])
async def test_forwards_over_tls_and_reuses_one_connection(
    back: Gateway, files: TLSFiles, gateway_factory, kind: str
) -> None:  # type: ignore[no-untyped-def]
    server = dot(back) if kind == "dot" else doh(back)
    front = await gateway_factory(front_config([server], str(files.cert)), policy())
    names = ["many.example.test", "www.example.test", "mail.example.test", "mx1.example.test"]
    # Concurrent misses: pipelined on the DoT connection, streams of one HTTP/2 one.
    replies = await asyncio.gather(*(ask(front, n) for n in names))
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR] * len(names)
    assert replies[1].answer[0][0].to_text() == "192.0.2.1"
    blocked = await ask(front, "court.test")  # the front's own policy still applies
    assert ede(blocked)[0] == 16  # type: ignore[index]
    assert back.metrics.tcp_connections == 1  # one connection carried them all


@pytest.mark.parametrize(
    ("which", "name"),
    [("stranger", NAME), ("right", "wrong.example")],
    ids=["untrusted-ca", "name-mismatch"],
)
async def test_bad_certificate_is_refused(
    back: Gateway, files: TLSFiles, stranger: TLSFiles, gateway_factory, which: str, name: str
) -> None:  # type: ignore[no-untyped-def]
    ca = stranger if which == "stranger" else files
    front = await gateway_factory(front_config([dot(back, name)], str(ca.cert)))
    r = await ask(front, "www.example.test")
    assert r.rcode() == dns.rcode.SERVFAIL and ede(r)[0] == 22  # type: ignore[index]
    assert not back.metrics.queries  # nothing reached the upstream


@pytest.mark.parametrize(
    "order",
    [("dead-dot", "plain"), ("dead-plain", "doh"), ("dead-doh", "dot")],
)
async def test_failover_between_kinds(
    nsd: NSD, back: Gateway, files: TLSFiles, gateway_factory, order: tuple[str, str]
) -> None:  # type: ignore[no-untyped-def]
    dead = free_port()
    table = {
        "dead-dot": f"tls://127.0.0.1:{dead}#{NAME}",
        "dead-doh": f"https://127.0.0.1:{dead}/dns-query",
        "dead-plain": f"127.0.0.1:{dead}",
        "plain": f"127.0.0.1:{nsd.port}",
        "dot": dot(back),
        "doh": doh(back),
    }
    front = await gateway_factory(front_config([table[o] for o in order], str(files.cert)))
    r = await ask(front, "www.example.test")
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tls://192.0.2.53#dns.example", ("tls", "192.0.2.53", 853, "dns.example", "")),
        ("tls://[2001:db8::53]:8853", ("tls", "2001:db8::53", 8853, "2001:db8::53", "")),
        (
            "https://dns.example/dns-query",
            ("https", "dns.example", 443, "dns.example", "/dns-query"),
        ),
        ("https://192.0.2.9:8443/q", ("https", "192.0.2.9", 8443, "192.0.2.9", "/q")),
    ],
)
def test_server_syntax(text: str, expected: tuple[object, ...]) -> None:
    parsed = EncryptedUpstream.parse(text)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.name, parsed.path) == expected
    assert EncryptedUpstream.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    "text", ["tls://dns.example", "quic://192.0.2.1", "https://", "https://h/q?x=1"]
)
def test_bad_server_is_a_clear_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[dns.upstream]\nservers = ["{text}"]\n')
    with pytest.raises(ConfigError, match=r"\[dns.upstream\] servers"):
        load_config(path)


def _unbound_dot(
    workdir: Path, nsd_port: int, files: TLSFiles
) -> tuple[subprocess.Popen[bytes], int]:
    plain, tls = free_port(), free_port()
    (workdir / "unbound.conf").write_text(f"""server:
    interface: 127.0.0.1@{plain}
    interface: 127.0.0.1@{tls}
    tls-port: {tls}
    tls-service-key: "{files.key}"
    tls-service-pem: "{files.cert}"
    do-daemonize: no
    use-syslog: no
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: ""
    do-ip6: no
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "iterator"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{nsd_port}
""")
    proc = subprocess.Popen(
        [UNBOUND_BINARY, "-d", "-c", str(workdir / "unbound.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, tls


async def test_unbound_tls_port_as_upstream(
    nsd: NSD, files: TLSFiles, gateway_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    if not Path(UNBOUND_BINARY).exists() and shutil.which("unbound") is None:
        pytest.fail("unbound is not installed: run scripts/install-system-deps.sh as root")
    proc, tls = _unbound_dot(tmp_path, nsd.port, files)
    try:
        front = await gateway_factory(
            front_config([f"tls://127.0.0.1:{tls}#{NAME}"], str(files.cert))
        )
        deadline = time.monotonic() + 15
        while True:
            r = await ask(front, "www.example.test")
            if r.rcode() == dns.rcode.NOERROR or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.1"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_in_memory_twin_stands_in_for_encrypted_upstreams() -> None:
    """MemoryUpstream is the EncryptedTransport's twin too: a chain with a tls://
    upstream answers from it, no socket opened."""
    from clearwall.dnsserver.gateway import build_gateway
    from clearwall.dnsserver.handlers import build
    from clearwall.dnsserver.handlers.base import Services
    from clearwall.dnsserver.memory import MemoryUpstream
    from clearwall.dnsserver.policyholder import PolicyHolder, StaticPolicy

    twin = MemoryUpstream({"www.example.test": [("A", 300, "192.0.2.1")]})
    config = front_config([f"tls://192.0.2.53#{NAME}"], "")
    gw = build_gateway(config, StaticPolicy(), transport=twin)  # type: ignore[arg-type]
    services = Services(config, PolicyHolder(StaticPolicy()), transport=twin, encrypted=twin)  # type: ignore[arg-type]
    gw.chain, _names, _fast = build(services)
    r = await ask(gw, "www.example.test")
    assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.1"
    assert len(twin.queries) == 1


async def _udp(front: Gateway, name: str, source: str) -> dns.message.Message:
    """Ask ``front`` over real UDP from ``source`` (the listener, so the fused paths)."""
    import dns.asyncquery

    query = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(
        query, "127.0.0.1", timeout=5, port=front.server.addresses[0][1], source=source
    )
    return reply


@pytest.mark.parametrize("route", ["default list", "per-jurisdiction list"])
async def test_misses_for_an_encrypted_route_never_leave_as_plain_udp(
    nsd: NSD, back: Gateway, files: TLSFiles, gateway_factory, route: str
) -> None:  # type: ignore[no-untyped-def]
    """The fused C miss path speaks plain UDP only: misses whose upstream list has a
    tls:// server go through the Python upstream, over TLS, and nothing is sent as plain
    UDP to that server (a UDP socket on its port sees nothing), while the misses of a
    plain list still take the C path."""
    import socket

    from clearwall.config import UpstreamConfig
    from clearwall.dnsserver.forward import available
    from clearwall.dnsserver.policyholder import StaticPolicy

    if not available():
        pytest.skip("the C miss path needs Linux")
    dot_port = port(back, "dot")
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spy.bind(("127.0.0.1", dot_port))  # the would-be plain port of the DoT server
    spy.setblocking(False)
    tls = EncryptedUpstream.parse(dot(back))
    plain = HostPort("127.0.0.1", nsd.port)
    # 127.0.0.3 is a client of jurisdiction xa; 127.0.0.1 of none (the default list).
    if route == "default list":
        servers: tuple[HostPort | EncryptedUpstream, ...] = (tls,)
        per: dict[str, tuple[HostPort | EncryptedUpstream, ...]] = {"xa": (plain,)}
        encrypted_client, plain_client = "127.0.0.1", "127.0.0.3"
    else:
        servers, per = (plain,), {"xa": (tls, plain)}  # a tls:// server in the list
        encrypted_client, plain_client = "127.0.0.3", "127.0.0.1"
    upstream = UpstreamConfig(
        servers=servers, per_jurisdiction=per, timeout=2.0, attempts=1, ca_file=str(files.cert)
    )
    cfg = dataclasses.replace(dns_config(0), upstream=upstream)
    front = await gateway_factory(cfg, StaticPolicy(networks={"127.0.0.3/32": "xa"}))
    try:
        miss = front.server.dispatcher.miss
        assert front.server.udp_mode.startswith("recvmmsg") and miss is not None
        for client in (encrypted_client, plain_client):  # the chain fills the C path's memos
            assert (await _udp(front, "www.example.test", client)).rcode() == dns.rcode.NOERROR
        taken = miss.path.stats()["taken"]
        asked = back.metrics.cache_misses
        for i in range(5):
            r = await _udp(front, f"e{i}.wild.signed.test", encrypted_client)
            assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.11"
        assert miss.path.stats()["taken"] == taken  # none taken by the C path
        assert back.metrics.cache_misses == asked + 5  # every one asked over TLS
        with pytest.raises(BlockingIOError):
            spy.recvfrom(4096)  # and none as plain UDP
        for i in range(5):
            r = await _udp(front, f"p{i}.wild.signed.test", plain_client)
            assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.11"
        assert miss.path.stats()["taken"] == taken + 5  # the plain list's: the C path
        with pytest.raises(BlockingIOError):
            spy.recvfrom(4096)
    finally:
        spy.close()
