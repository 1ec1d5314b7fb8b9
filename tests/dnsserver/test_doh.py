"""DNS over HTTPS (RFC 8484) end to end: kdig, curl --doh-url and dnspython (HTTP/2 and
HTTP/1.1) against the real listener, and the bad-request battery."""

from __future__ import annotations

import asyncio
import base64
import os

import dns.asyncquery
import dns.message
import dns.rcode
import httpx2
import pytest
from tests.ports import free_port

from clearwall.dnsserver.gateway import Gateway
from dnsserver.encrypted import (
    NAME,
    TLSFiles,
    client_context,
    doh_url,
    encrypted_config,
    kdig,
    need,
    policy,
    port,
    run,
    tls_files,
    tls_socket,
)
from dnsserver.helpers import ede, sde
from dnsserver.upstreams import NSD


@pytest.fixture(params=["nghttp2", "h2"], autouse=True)
def http2_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with both HTTP/2 implementations: libnghttp2 (``_doh2``) and the
    pure-Python h2 it stands in for where it is not built."""
    from clearwall.dnsserver import doh

    if request.param == "nghttp2" and doh._doh2 is None:
        pytest.fail(
            "clearwall.dnsserver._doh2 is not built: install libnghttp2-dev "
            "(scripts/install-system-deps.sh), then reinstall the package"
        )
    monkeypatch.setattr(doh, "USE_NGHTTP2", request.param == "nghttp2")
    return str(request.param)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def gw(nsd: NSD, files: TLSFiles, gateway_factory) -> Gateway:  # type: ignore[no-untyped-def]
    return await gateway_factory(encrypted_config(nsd.port, files), policy())  # type: ignore[no-any-return]


def b64(wire: bytes) -> str:
    return base64.urlsafe_b64encode(wire).rstrip(b"=").decode()


QUERY = dns.message.make_query("www.example.test", "A", use_edns=0)
QUERY.id = 0
WIRE = QUERY.to_wire()


@pytest.mark.parametrize("mode", ["+https", "+https-get"])
async def test_kdig_https(gw: Gateway, files: TLSFiles, mode: str) -> None:
    loop = asyncio.get_running_loop()
    blocked = await loop.run_in_executor(None, kdig, gw, files, mode, "court.test")
    assert "status: NXDOMAIN" in blocked and "EDE: 16 (Censored)" in blocked
    assert "HTTP/2" in blocked
    allowed = await loop.run_in_executor(None, kdig, gw, files, mode, "www.example.test")
    assert "status: NOERROR" in allowed and "192.0.2.1" in allowed and "PADDING" in allowed


async def test_curl_doh_url(gw: Gateway, files: TLSFiles) -> None:
    """curl resolves through us: a blocked name fails to resolve, an allowed one resolves
    (ns1.example.test is 127.0.0.1; the port is closed, so the connection is refused)."""
    curl = need("curl")
    closed = free_port()
    base = [curl, "-sv", "--max-time", "10", "--cacert", str(files.cert)]
    base += ["--doh-url", doh_url(gw)]
    loop = asyncio.get_running_loop()
    blocked = await loop.run_in_executor(None, run, [*base, f"http://court.test:{closed}/"])
    assert blocked.returncode == 6, blocked.stderr  # could not resolve host
    allowed = await loop.run_in_executor(None, run, [*base, f"http://ns1.example.test:{closed}/"])
    assert allowed.returncode == 7, allowed.stderr  # resolved; nothing listens there
    assert "DoH A: 127.0.0.1" in allowed.stderr


@pytest.mark.parametrize("post", [True, False], ids=["POST", "GET"])
async def test_many_streams_on_one_http2_connection(
    gw: Gateway, files: TLSFiles, post: bool
) -> None:
    names = ["www.example.test", "court.test", "malware.test", "mail.example.test"] * 25
    async with httpx2.AsyncClient(http2=True, verify=client_context(files)) as client:

        async def one(i: int, name: str) -> tuple[int, int]:
            q = dns.message.make_query(name, "A", use_edns=0)
            r = await dns.asyncquery.https(q, doh_url(gw), client=client, post=post, timeout=10)
            return i, r.rcode()

        got = await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
    assert [rcode for _i, rcode in got] == [
        dns.rcode.NXDOMAIN if n.endswith(("court.test", "malware.test")) else dns.rcode.NOERROR
        for n in names
    ]
    # All of them on one connection.
    assert gw.metrics.tcp_connections <= 1


async def test_http11(gw: Gateway, files: TLSFiles) -> None:
    q = dns.message.make_query("malware.test", "A", use_edns=0)
    r = await dns.asyncquery.https(
        q,
        doh_url(gw),
        verify=client_context(files),
        http_version=dns.asyncquery.HTTPVersion.H1,
        timeout=10,
    )
    assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 15  # type: ignore[index]
    assert sde(r)["s"] == 1  # Malware


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http/1.1"])
async def test_cache_control_max_age_follows_the_ttl(
    gw: Gateway, files: TLSFiles, http2: bool
) -> None:
    async with httpx2.AsyncClient(http2=http2, verify=client_context(files)) as client:
        allowed = await client.get(doh_url(gw), params={"dns": b64(WIRE)})
        block = dns.message.make_query("court.test", "A")
        blocked = await client.get(doh_url(gw), params={"dns": b64(block.to_wire())})
    assert allowed.status_code == 200 and allowed.headers["content-type"] == (
        "application/dns-message"
    )
    assert allowed.headers["cache-control"] == "max-age=300"  # www's TTL in the zone
    assert blocked.headers["cache-control"] == "max-age=60"  # [dns.block] ttl


BAD = [
    # (method, path, content type, body or dns parameter, expected status)
    ("GET", "/other", None, b64(WIRE), 404),
    ("GET", "/dns-query", None, "not*base64!", 400),
    ("GET", "/dns-query", None, b64(WIRE) + "=", 400),  # padding is not base64url here
    ("GET", "/dns-query", None, None, 400),  # no dns parameter
    ("GET", "/dns-query", None, b64(b"\x00\x01\x02"), 400),  # shorter than a header
    ("POST", "/dns-query", "text/plain", WIRE, 415),
    ("POST", "/dns-query", "application/dns-message", os.urandom(70_000), 413),
    ("PUT", "/dns-query", "application/dns-message", WIRE, 405),
    ("POST", "/dns-query", "application/dns-message", WIRE[:12] + b"\xff", 200),  # FORMERR
    ("POST", "/dns-query", "application/dns-message", WIRE, 200),
]


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http/1.1"])
async def test_bad_requests_get_http_errors_and_the_connection_lives(
    gw: Gateway, files: TLSFiles, http2: bool
) -> None:
    base = f"https://127.0.0.1:{port(gw, 'doh')}"
    async with httpx2.AsyncClient(http2=http2, verify=client_context(files)) as client:
        for method, path, ctype, body, status in BAD:
            headers = {"content-type": ctype} if ctype else {}
            if method == "GET":
                params = {"dns": body} if body is not None else {}
                response = await client.get(base + path, params=params)
            else:
                response = await client.request(method, base + path, content=body, headers=headers)
            assert response.status_code == status, (method, path, ctype)
            if status == 200 and body != WIRE:
                assert dns.message.from_wire(response.content).rcode() == dns.rcode.FORMERR
            # The same connection still answers a good query afterwards (a 413 on
            # HTTP/1.1 closes it, as it says, and the client opens another).
            ok = await client.get(base + "/dns-query", params={"dns": b64(WIRE)})
            assert ok.status_code == 200


def _garbage(gw: Gateway, files: TLSFiles, payload: bytes, alpn: str) -> bytes:
    with tls_socket(port(gw, "doh"), client_context(files, [alpn])) as conn:
        conn.sendall(payload)
        try:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        except OSError:
            pass
    return data


@pytest.mark.parametrize(
    ("payload", "alpn"),
    [
        (os.urandom(2000), "h2"),  # not the HTTP/2 preface
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(500), "h2"),  # bad frames
        (b"GET /dns-query HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"y" * 200_000, "http/1.1"),
        (os.urandom(2000), "http/1.1"),
    ],
    ids=["h2-garbage", "h2-bad-frames", "h1-huge-header", "h1-garbage"],
)
async def test_garbage_closes_that_connection_only(
    gw: Gateway, files: TLSFiles, payload: bytes, alpn: str
) -> None:
    await asyncio.get_running_loop().run_in_executor(None, _garbage, gw, files, payload, alpn)
    async with httpx2.AsyncClient(http2=True, verify=client_context(files)) as client:
        ok = await client.get(doh_url(gw), params={"dns": b64(WIRE)})
    assert ok.status_code == 200
    for _ in range(100):  # every connection closed, the garbage one included
        if gw.metrics.tcp_connections == 0:
            break
        await asyncio.sleep(0.02)
    assert gw.metrics.tcp_connections == 0


async def test_certificate_names_what_ddr_announces(gw: Gateway, files: TLSFiles) -> None:
    """The DoH URL verifies with the certificate's name too (DDR's target name)."""
    async with httpx2.AsyncClient(http2=True, verify=client_context(files)) as client:
        response = await client.get(
            doh_url(gw), params={"dns": b64(WIRE)}, extensions={"sni_hostname": NAME}
        )
    assert response.status_code == 200


async def test_closed_connections_are_freed(gw: Gateway, files: TLSFiles) -> None:
    """A connection's HTTP/2 state goes with it (the libnghttp2 session holds a bound
    method of the connection: a cycle that once kept every closed connection alive)."""
    import gc
    import weakref

    refs = []
    for _ in range(5):
        async with httpx2.AsyncClient(http2=True, verify=client_context(files)) as client:
            ok = await client.get(doh_url(gw), params={"dns": b64(WIRE)})
            assert ok.status_code == 200
            refs += [weakref.ref(conn) for conn in gw.server.connections]
    for _ in range(100):
        if gw.metrics.tcp_connections == 0:
            break
        await asyncio.sleep(0.02)
    gc.collect()
    assert refs and not [r for r in refs if r() is not None]


def _status_of_long_get(gw: Gateway, files: TLSFiles, length: int) -> int:
    """The :status an HTTP/2 GET with a ``length``-character dns parameter gets (a raw
    h2 client: httpx refuses URLs this long)."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    with tls_socket(port(gw, "doh"), client_context(files, ["h2"])) as conn:
        client.initiate_connection()
        path = "/dns-query?dns=" + "A" * length
        headers = [(":method", "GET"), (":scheme", "https"), (":authority", NAME)]
        client.send_headers(1, [*headers, (":path", path)], end_stream=True)
        try:
            conn.sendall(client.data_to_send())
        except OSError:  # closed while we still sent the oversized header block
            return 0
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                data = b""
            if not data:
                return 0  # closed (GOAWAY): the header block is over the HTTP/2 limits
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
            try:
                conn.sendall(client.data_to_send())
            except OSError:  # the server sent GOAWAY and closed before our reply to it
                return 0


@pytest.mark.parametrize(("length", "status"), [(200, 200), (95_000, 0)])
async def test_a_path_too_long_closes_that_connection(
    gw: Gateway, files: TLSFiles, length: int, status: int
) -> None:
    """A header block longer than any DNS message in base64url needs is refused at the
    HTTP/2 layer (the connection is closed, by nghttp2 or h2 alike); the next client is
    served. (200 'A's decode to a DNS header with a bad body: FORMERR, 200.)"""
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, _status_of_long_get, gw, files, length)
    assert got == status
    async with httpx2.AsyncClient(http2=True, verify=client_context(files)) as client:
        ok = await client.get(doh_url(gw), params={"dns": b64(WIRE)})
    assert ok.status_code == 200
