"""The primary over real sockets with dnspython's client: SOA over UDP and TCP, AXFR, IXFR
(a difference, the full zone for a serial never served or forgotten, SOA only over UDP),
serial = tree size, the allow list, TSIG, malformed requests."""

from __future__ import annotations

import base64
import logging
import socket
import struct
from collections.abc import Callable

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from tests.ports import free_port

from clearwall.errors import ConfigError
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store
from clearwall.xfr.keys import add_key

from .conftest import COURT, OPERATOR, RunningPrimary, publish

CENSORED = "xa.censored.rpz.clearwall."
BLOCKED = "xa.blocked.rpz.clearwall."
Factory = Callable[..., RunningPrimary]


@pytest.fixture
def policy(service: PolicyService) -> PolicyService:
    """A court order (a subtree, an exact name) and an operator order in xa."""
    publish(service, COURT, "court-1", ["subtree bad.example", "exact www.court.example"])
    publish(service, OPERATOR, "sec-1", ["exact malware.example", "response-ip 192.0.2.0/24"])
    return service


def soa_serial(response: dns.message.Message) -> int:
    return int(response.answer[0][0].serial)


def transfer(
    port: int, zone: str, serial: int | None = None, keyring: dict | None = None, keyname: str = ""
) -> tuple[list[dns.message.Message], int]:
    """AXFR, or IXFR from ``serial``, with dnspython's client (which checks the stream's
    shape and, with a keyring, every message's TSIG): the messages and their octets."""
    rdtype = dns.rdatatype.AXFR if serial is None else dns.rdatatype.IXFR
    messages = list(
        dns.query.xfr(
            "127.0.0.1",
            zone,
            rdtype=rdtype,
            serial=serial or 0,
            port=port,
            keyring=keyring,
            keyname=keyname or None,
            relativize=False,
            timeout=10,
        )
    )
    return messages, sum(len(m.wire or b"") for m in messages)


def raw_ixfr(port: int, zone: str, serial: int) -> list[dns.message.Message]:
    """An IXFR read off the socket without the client's own checks (dnspython refuses a
    serial lower than the one it asked from, which a full transfer for a serial from the
    future has)."""
    query = dns.message.make_query(zone, "IXFR")
    query.authority.append(
        dns.rrset.from_text(zone, 0, "IN", "SOA", f"localhost. h.localhost. {serial} 1 1 1 1")
    )
    wire = query.to_wire()
    messages: list[dns.message.Message] = []
    records: list[tuple[int, int]] = []  # (rdtype, serial or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        reader = s.makefile("rb")
        while True:
            length = struct.unpack("!H", reader.read(2))[0]
            message = dns.message.from_wire(reader.read(length), one_rr_per_rrset=True)
            messages.append(message)
            for rrset in message.answer:
                soa = rrset.rdtype == dns.rdatatype.SOA
                records.append((rrset.rdtype, int(rrset[0].serial) if soa else 0))
            first = records[0]
            ends = records[-1] == first
            diff = len(records) > 1 and records[1][0] == dns.rdatatype.SOA
            if len(records) == 1 or (ends and records.count(first) == (3 if diff else 2)):
                return messages


def rrs(messages: list[dns.message.Message]) -> list[str]:
    """Every answer record of a transfer, as text."""
    return [
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}"
        for m in messages
        for rrset in m.answer
        for rdata in rrset
    ]


def test_soa_over_udp_and_tcp_carries_the_tree_size(
    policy: PolicyService, store: Store, primary_factory: Factory
) -> None:
    running = primary_factory()
    query = dns.message.make_query(CENSORED, "SOA")
    for send in (dns.query.udp, dns.query.tcp):
        response = send(query, "127.0.0.1", port=running.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA
        assert soa_serial(response) == store.log_size()


def test_axfr_then_ixfr_of_one_name(
    policy: PolicyService, store: Store, primary_factory: Factory
) -> None:
    running = primary_factory()
    old = store.log_size()
    messages, _ = transfer(running.port, CENSORED)
    records = rrs(messages)
    assert records[0].startswith(f"{CENSORED} SOA localhost. hostmaster.localhost. {old} ")
    assert records[-1] == records[0]
    assert f"bad.example.{CENSORED} CNAME ." in records
    assert f"*.bad.example.{CENSORED} CNAME ." in records
    assert f"www.court.example.{CENSORED} CNAME ." in records
    blocked, _ = transfer(running.port, BLOCKED)
    assert f"malware.example.{BLOCKED} CNAME ." in rrs(blocked)
    assert f"24.0.2.0.192.rpz-ip.{BLOCKED} CNAME ." in rrs(blocked)

    policy.amend_order(1, add=[RuleSpec(RuleKind.EXACT, "new.court.example")], reason="one more")
    new = store.log_size()
    running.wait_serial(new)
    diff, size = transfer(running.port, CENSORED, serial=old)
    assert rrs(diff) == [
        f"{CENSORED} SOA localhost. hostmaster.localhost. {new} 60 10 604800 60",
        f"{CENSORED} SOA localhost. hostmaster.localhost. {old} 60 10 604800 60",
        f"{CENSORED} SOA localhost. hostmaster.localhost. {new} 60 10 604800 60",
        f"new.court.example.{CENSORED} CNAME .",
        f"{CENSORED} SOA localhost. hostmaster.localhost. {new} 60 10 604800 60",
    ]
    # One small message: a one-name change costs a few hundred octets, not a zone.
    assert len(diff) == 1 and 0 < size < 400, size
    # The blocked zone did not change: its IXFR is the serials alone.
    same, _ = transfer(running.port, BLOCKED, serial=old)
    assert len(rrs(same)) == 4
    # Already current: the SOA alone.
    current, _ = transfer(running.port, CENSORED, serial=new)
    assert len(rrs(current)) == 1


@pytest.mark.parametrize("how", ["future", "forgotten"])
def test_unknown_serial_gets_the_whole_zone(
    how: str, policy: PolicyService, store: Store, primary_factory: Factory
) -> None:
    running = primary_factory(history=1)
    first = store.log_size()
    for n in range(2):  # two versions: the first one's step is forgotten (history=1)
        policy.amend_order(1, add=[RuleSpec(RuleKind.EXACT, f"n{n}.court.example")], reason="x")
        running.wait_serial(store.log_size())
    serial = first + 1000 if how == "future" else first
    records = rrs(raw_ixfr(running.port, CENSORED, serial))
    assert records[0] == records[-1] and records[0].split()[4] == str(store.log_size())
    assert f"bad.example.{CENSORED} CNAME ." in records  # unchanged content: a full zone
    assert f"n1.court.example.{CENSORED} CNAME ." in records


def test_ixfr_over_udp_answers_the_soa_alone(
    policy: PolicyService, primary_factory: Factory
) -> None:
    running = primary_factory()
    query = dns.message.make_query(CENSORED, "IXFR")
    query.authority.append(
        dns.rrset.from_text(CENSORED, 0, "IN", "SOA", "localhost. hostmaster.localhost. 1 1 1 1 1")
    )
    response = dns.query.udp(query, "127.0.0.1", port=running.port, timeout=5)
    assert [r.rdtype for r in response.answer] == [dns.rdatatype.SOA]


@pytest.mark.parametrize(
    ("query", "rcode"),
    [
        (dns.message.make_query(CENSORED, "AXFR"), dns.rcode.FORMERR),  # AXFR over UDP
        (dns.message.make_query("example.com.", "SOA"), dns.rcode.REFUSED),  # not ours
        (dns.message.make_query(CENSORED, "A"), dns.rcode.REFUSED),
        (dns.message.make_query(CENSORED, "IXFR"), dns.rcode.FORMERR),  # no SOA in authority
    ],
)
def test_requests_we_do_not_serve(
    query: dns.message.Message, rcode: int, policy: PolicyService, primary_factory: Factory
) -> None:
    running = primary_factory()
    response = dns.query.udp(query, "127.0.0.1", port=running.port, timeout=5)
    assert response.rcode() == rcode


def test_clients_outside_allow_are_refused_and_logged(
    policy: PolicyService, primary_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    running = primary_factory(allow=["10.0.0.0/8"])
    caplog.set_level(logging.WARNING, logger="clearwall.xfr.server")
    for send, rdtype in ((dns.query.udp, "SOA"), (dns.query.tcp, "AXFR")):
        query = dns.message.make_query(CENSORED, rdtype)
        response = send(query, "127.0.0.1", port=running.port, timeout=5)
        assert response.rcode() == dns.rcode.REFUSED
        assert not response.answer
    assert "refused acl from 127.0.0.1: not in [xfr] allow" in caplog.text
    assert running.primary.metrics.refused.labels("acl")._value.get() == 2


@pytest.fixture
def keyed(policy: PolicyService, tmp_path, primary_factory: Factory) -> tuple[RunningPrimary, dict]:
    """A primary with a TSIG key ``sec1`` configured, and the keyring a client needs."""
    key, created = add_key(tmp_path / "xfr.keys", "sec1")
    assert created and (tmp_path / "xfr.keys").stat().st_mode & 0o777 == 0o600
    running = primary_factory()
    return running, dns.tsigkeyring.from_text({"sec1": ("hmac-sha256", key.secret)})


def test_tsig_signed_transfers(
    keyed: tuple[RunningPrimary, dict], policy: PolicyService, store: Store
) -> None:
    running, keyring = keyed
    many = [f"exact n{i}.court.example" for i in range(2000)]  # several messages
    publish(policy, COURT, "court-2", many)
    running.wait_serial(store.log_size())
    messages, _ = transfer(running.port, CENSORED, keyring=keyring, keyname="sec1")
    assert len(messages) > 3
    assert all(m.had_tsig for m in messages)  # each signed, each checked by the client
    records = rrs(messages)
    assert f"bad.example.{CENSORED} CNAME ." in records
    assert f"n1999.court.example.{CENSORED} CNAME ." in records
    query = dns.message.make_query(CENSORED, "SOA")
    query.use_tsig(keyring, "sec1")
    response = dns.query.udp(query, "127.0.0.1", port=running.port, timeout=5)
    assert response.had_tsig and soa_serial(response) == store.log_size()


def test_tsig_failures(
    keyed: tuple[RunningPrimary, dict], caplog: pytest.LogCaptureFixture
) -> None:
    running, _ = keyed
    caplog.set_level(logging.WARNING, logger="clearwall.xfr.server")
    unsigned = dns.message.make_query(CENSORED, "SOA")
    assert dns.query.udp(unsigned, "127.0.0.1", port=running.port, timeout=5).rcode() == (
        dns.rcode.REFUSED
    )
    wrong_secret = base64.b64encode(b"x" * 32).decode()
    for name, secret, error in (
        ("sec1", wrong_secret, dns.rcode.BADSIG),
        ("nobody", wrong_secret, dns.rcode.BADKEY),
    ):
        query = dns.message.make_query(CENSORED, "AXFR")
        query.use_tsig(dns.tsigkeyring.from_text({name: ("hmac-sha256", secret)}), name)
        wire = query.to_wire()
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
            s.sendall(struct.pack("!H", len(wire)) + wire)
            length = struct.unpack("!H", s.recv(2))[0]
            data = b""
            while len(data) < length:
                data += s.recv(length - len(data))
        response = dns.message.from_wire(data, keyring=False)
        assert response.rcode() == dns.rcode.NOTAUTH
        assert response.tsig is not None and response.tsig[0].error == error
        assert not response.answer
    assert "unsigned" in caplog.text and "bad TSIG signature" in caplog.text
    assert "unknown TSIG key" in caplog.text


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example",  # cut in the question
        b"\x12\x34\x01\x00\x00\x05" + b"\x00" * 6,  # five questions announced, none there
        b"\x12\x34",  # shorter than a header: no reply
        b"\x12\x34\x81\x80" + b"\x00" * 8,  # a response: never answered
    ],
)
def test_malformed_requests_never_crash_the_listener(
    garbage: bytes, policy: PolicyService, primary_factory: Factory
) -> None:
    running = primary_factory()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(garbage, ("127.0.0.1", running.port))
        try:
            data, _ = s.recvfrom(512)
        except TimeoutError:
            data = b""
    if len(garbage) >= 12 and not garbage[2] & 0x80:
        assert data[:2] == garbage[:2] and data[3] & 0x0F == dns.rcode.FORMERR
    else:
        assert data == b""
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(garbage)) + garbage)
        query = dns.message.make_query(CENSORED, "SOA")
        wire = query.to_wire()
        s.sendall(struct.pack("!H", len(wire)) + wire)
        replies = []
        buffer = b""
        while len(replies) < (2 if len(garbage) >= 12 and not garbage[2] & 0x80 else 1):
            buffer += s.recv(4096)
            while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack("!H", buffer[:2])[0]:
                n = struct.unpack("!H", buffer[:2])[0]
                replies.append(buffer[2 : 2 + n])
                buffer = buffer[2 + n :]
    assert dns.message.from_wire(replies[-1]).rcode() == dns.rcode.NOERROR


def test_jurisdictions_and_zone_names(
    service: PolicyService, store: Store, primary_factory: Factory
) -> None:
    service.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])
    running = primary_factory(suffix="rpz.example.net")
    names = sorted(str(n) for n in running.primary.zones)
    assert names == [
        "xa.blocked.rpz.example.net.",
        "xa.censored.rpz.example.net.",
        "xb.blocked.rpz.example.net.",
        "xb.censored.rpz.example.net.",
    ]
    response = dns.query.udp(
        dns.message.make_query("xb.censored.rpz.example.net.", "SOA"),
        "127.0.0.1",
        port=running.port,
        timeout=5,
    )
    # Each jurisdiction is a log entry (jurisdiction-set), authorities are not.
    assert response.rcode() == dns.rcode.NOERROR and soa_serial(response) == store.log_size() == 2


def test_a_busy_address_is_one_clear_error(policy: PolicyService, primary_factory: Factory) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"\[xfr\] listen: cannot listen on 127.0.0.1:{port}"
        ):
            primary_factory(listen=[f"127.0.0.1:{port}"])


def test_metrics_are_served_while_the_primary_runs_and_the_port_is_freed_after(
    policy: PolicyService, primary_factory: Factory
) -> None:
    import httpx

    port = free_port()
    running = primary_factory(metrics_listen=f"127.0.0.1:{port}")
    dns.query.udp(dns.message.make_query(CENSORED, "SOA"), "127.0.0.1", port=running.port)
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'clearwall_xfr_requests_total{kind="soa"} 1.0' in body
    assert f'clearwall_xfr_zone_serial{{zone="{CENSORED}"}}' in body
    running.stop()
    with socket.socket() as again:  # a primary started again in this process can listen
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, not LISTEN
        again.bind(("127.0.0.1", port))
