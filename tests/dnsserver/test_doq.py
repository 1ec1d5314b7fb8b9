"""DNS over QUIC (RFC 9250) end to end: dnspython's DoQ client and raw aioquic streams."""

from __future__ import annotations

import asyncio

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from aioquic.asyncio.client import connect
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived

from clearwall.dnsserver.gateway import Gateway
from dnsserver.encrypted import NAME, TLSFiles, encrypted_config, policy, port, tls_files
from dnsserver.helpers import ede
from dnsserver.upstreams import NSD


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def gw(nsd: NSD, files: TLSFiles, gateway_factory) -> Gateway:  # type: ignore[no-untyped-def]
    return await gateway_factory(encrypted_config(nsd.port, files), policy())  # type: ignore[no-any-return]


async def quic(gw: Gateway, files: TLSFiles, name: str, **kwargs: object) -> dns.message.Message:
    q = dns.message.make_query(name, "A", **kwargs)  # type: ignore[arg-type]
    return await dns.asyncquery.quic(
        q,
        "127.0.0.1",
        port=port(gw, "doq"),
        verify=str(files.cert),  # aioquic takes a CA file, not an SSLContext
        server_hostname=NAME,
        timeout=5,
    )


async def test_blocked_and_allowed(gw: Gateway, files: TLSFiles) -> None:
    for _ in range(2):
        r = await quic(gw, files, "court.test", use_edns=0)
        assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 16  # type: ignore[index]
        assert len(r.to_wire()) % 468 == 0  # padded (RFC 9250 section 5.4)
        r = await quic(gw, files, "www.example.test", use_edns=0)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "192.0.2.1"


def client_config(files: TLSFiles) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=["doq"], server_name=NAME)
    config.load_verify_locations(str(files.cert))
    return config


class Recorder:
    """Collects what arrives on each stream of a raw aioquic connection."""

    def __init__(self) -> None:
        self.streams: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.closed: int | None = None

    def __call__(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self.streams[event.stream_id] = self.streams.get(event.stream_id, b"") + event.data
            if event.end_stream:
                self.ended.add(event.stream_id)
        elif isinstance(event, ConnectionTerminated):
            self.closed = event.error_code


async def raw_streams(gw: Gateway, files: TLSFiles, messages: list[bytes]) -> Recorder:
    """Send each message on a stream of its own (framed as DoQ), collect the replies."""
    recorder = Recorder()
    async with connect("127.0.0.1", port(gw, "doq"), configuration=client_config(files)) as client:
        original = client.quic_event_received

        def events(event: QuicEvent) -> None:
            recorder(event)
            if not isinstance(event, StreamDataReceived):  # our streams, not asyncio's
                original(event)

        client.quic_event_received = events  # type: ignore[method-assign]
        conn = client._quic
        for message in messages:
            stream = conn.get_next_available_stream_id()
            conn.send_stream_data(stream, len(message).to_bytes(2, "big") + message, True)
        client.transmit()
        for _ in range(100):
            if recorder.closed is not None or len(recorder.ended) >= len(messages):
                break
            await asyncio.sleep(0.05)
    return recorder


async def test_many_concurrent_streams_on_one_connection(gw: Gateway, files: TLSFiles) -> None:
    names = ["www.example.test", "court.test", "malware.test", "mail.example.test"] * 20
    messages = []
    for name in names:
        q = dns.message.make_query(name, "A", use_edns=0)
        q.id = 0  # RFC 9250 section 4.2.1
        messages.append(q.to_wire())
    got = await raw_streams(gw, files, messages)
    assert len(got.ended) == len(names), (len(got.ended), got.closed)
    rcodes = sorted(dns.message.from_wire(data[2:]).rcode() for data in got.streams.values())
    assert rcodes.count(dns.rcode.NXDOMAIN) == 40 and rcodes.count(dns.rcode.NOERROR) == 40


@pytest.mark.parametrize(
    "bad",
    [
        "nonzero-id",
        "bad-length",
        "short",
    ],
)
async def test_protocol_errors_close_the_connection(gw: Gateway, files: TLSFiles, bad: str) -> None:
    q = dns.message.make_query("www.example.test", "A")
    q.id = 0 if bad != "nonzero-id" else 4242
    wire = q.to_wire()
    recorder = Recorder()
    async with connect("127.0.0.1", port(gw, "doq"), configuration=client_config(files)) as client:
        original = client.quic_event_received

        def events(event: QuicEvent) -> None:
            recorder(event)
            if not isinstance(event, StreamDataReceived):  # our streams, not asyncio's
                original(event)

        client.quic_event_received = events  # type: ignore[method-assign]
        conn = client._quic
        stream = conn.get_next_available_stream_id()
        if bad == "bad-length":
            framed = (len(wire) + 5).to_bytes(2, "big") + wire
        elif bad == "short":
            framed = b"\x00\x03abc"
        else:
            framed = len(wire).to_bytes(2, "big") + wire
        conn.send_stream_data(stream, framed, True)
        client.transmit()
        for _ in range(60):
            if recorder.closed is not None:
                break
            await asyncio.sleep(0.05)
    assert recorder.closed == 0x2  # DOQ_PROTOCOL_ERROR
    # The listener serves the next client.
    r = await quic(gw, files, "www.example.test", use_edns=0)
    assert r.rcode() == dns.rcode.NOERROR
