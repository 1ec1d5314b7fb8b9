"""Every option documented in examples/clearwall.toml has an effect an operator can observe.

``EFFECTS`` is a table: option -> (a changed value, what to observe, the context it is
observed in). Each row loads the example config, applies its context, observes once as
is and once with the option changed, and requires the two observations to differ. The
observations are behaviour (DNS answers through the built chain or a real listener, the
files ``clearwall init`` writes, the processes ``clearwall serve`` starts, what a control
plane publishes), never the config value read back. Two checks keep the table whole:
every option of the example is in it, and every option the loader accepts is in the
example.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import httpx
import pytest
import tomli_w
from tests.ports import free_port

from clearwall.config import Config, EncryptedUpstream, HostPort, load_config
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers import build
from clearwall.dnsserver.handlers.base import Services
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder, StaticPolicy
from clearwall.dnsserver.server import early_reply
from clearwall.errors import ConfigError
from clearwall.model import Action, AuthorityKind, Category, OrderRef
from clearwall.store.reader import PolicyReader

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "clearwall.toml"
pytestmark = pytest.mark.timeout(300)


def order(oid: int, jurisdiction: str = "*", action: Action = Action.NXDOMAIN) -> OrderRef:
    return OrderRef(
        id=oid,
        jurisdiction=jurisdiction,
        authority="Test Court",
        authority_kind=AuthorityKind.COURT,
        category=Category.COURT_ORDER,
        action=action,
        reference=f"T-{oid}",
        legal_basis="Test Act s. 1",
        title="Test order",
        contacts=("mailto:appeals@court.example",),
    )


POLICY = StaticPolicy(
    names={
        "xa-only.test": [order(1, "xa")],
        "sink.test": [order(2, action=Action.SINKHOLE)],
    },
    networks={"10.77.1.0/24": "xa", "2001:db8:77::/48": "xa"},
)
XA_CLIENT = "10.77.1.20"  # served as a client of xa (its network)


# -- the in-process DNS chain, on a clock the test moves ----------------------------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted:
    """An upstream transport that records what it is asked and answers as scripted:
    names under ``nx.`` get NXDOMAIN with an SOA (minimum 3600), others an A record with
    ``ttl``; ``failing`` makes every attempt time out."""

    def __init__(self, ttl: int = 300) -> None:
        self.ttl = ttl
        self.failing = False
        self.asked: list[tuple[tuple[str, int], float, dns.message.Message]] = []

    async def udp(self, server, query, timeout, check):  # type: ignore[no-untyped-def]
        msg = dns.message.from_wire(query)
        self.asked.append((server, timeout, msg))
        if self.failing:
            raise TimeoutError
        reply = dns.message.make_response(msg)
        name = msg.question[0].name
        if name.labels[0] == b"nx":
            reply.set_rcode(dns.rcode.NXDOMAIN)
            soa = "ns.test. h.test. 1 2 3 4 3600"
            reply.authority.append(dns.rrset.from_text("test.", 3600, "IN", "SOA", soa))
        else:
            reply.answer.append(dns.rrset.from_text(name, self.ttl, "IN", "A", "192.0.2.1"))
            if name.labels[0] == b"auth":  # a referral-style extra the upstream adds
                ns = dns.rrset.from_text("example.test.", self.ttl, "IN", "NS", "ns.test.")
                reply.authority.append(ns)
        wire: bytes = reply.to_wire()
        assert check(wire)
        return wire

    async def tcp(self, server, query, timeout):  # type: ignore[no-untyped-def]
        raise OSError("no TCP here")


class Chain:
    """The handler chain built from a config's [dns] section, asked as the server asks."""

    def __init__(self, config: Config, ttl: int = 300) -> None:
        self.clock = Clock()
        self.upstream = Scripted(ttl)
        self.metrics = DNSMetrics()
        services = Services(
            config.dns, PolicyHolder(POLICY), self.metrics, self.upstream, self.clock
        )
        self.entry, _names, _fast = build(services)

    def ask(
        self, name: str, rdtype: str = "A", client: str = XA_CLIENT
    ) -> dns.message.Message | None:
        data = dns.message.make_query(name, rdtype, use_edns=0).to_wire()
        q, early = early_reply(data, self.metrics)
        assert q is not None, early
        ctx = Context(data, client, 5353, False, q)
        result = self.entry(ctx)

        async def wait() -> None:
            await result  # type: ignore[misc]

        if not isinstance(result, Answer):
            asyncio.run(wait())
        return None if ctx.reply is None else dns.message.from_wire(ctx.reply)

    def rcode(self, name: str = "www.example.test", client: str = XA_CLIENT) -> str:
        reply = self.ask(name, client=client)
        return "dropped" if reply is None else dns.rcode.to_text(reply.rcode())


def answered(chain: Chain, clients: list[str], count: int) -> list[str]:
    """What each of ``count`` rounds of queries from ``clients`` got, at one instant."""
    out = []
    for _ in range(count):
        for client in clients:
            reply = chain.ask("www.example.test", client=client)
            if reply is None:
                out.append("dropped")
            elif reply.flags & dns.flags.TC:
                out.append("truncated")
            else:
                out.append(dns.rcode.to_text(reply.rcode()))
    return out


def refill(chain: Chain) -> list[str]:
    """What three queries get 0.1 s after a burst has used the bucket up."""
    answered(chain, [XA_CLIENT], 3)
    chain.clock.now += 0.1
    return answered(chain, [XA_CLIENT], 3)


def ttl(reply: dns.message.Message | None) -> int:
    assert reply is not None
    return int(reply.answer[0].ttl)


def sde(reply: dns.message.Message | None) -> dict[str, Any]:
    assert reply is not None
    for option in reply.options:
        if isinstance(option, dns.edns.EDEOption):
            return json.loads(option.text or "{}")  # type: ignore[no-any-return]
    raise AssertionError("no EDE")


def asked_again_after(config: Config, seconds: float, name: str = "www.example.test") -> int:
    """How many times the upstream was asked for ``name`` asked twice, ``seconds`` apart."""
    chain = Chain(config, ttl=300)
    chain.ask(name)
    chain.clock.now += seconds
    chain.ask(name)
    return len(chain.upstream.asked)


def stale(config: Config, after: float) -> tuple[str, int | None]:
    """(rcode, TTL) of an answer asked again ``after`` seconds past its expiry, with the
    upstream failing by then."""
    chain = Chain(config, ttl=60)
    chain.ask("www.example.test")
    chain.clock.now += 60 + after
    chain.upstream.failing = True
    reply = chain.ask("www.example.test")
    assert reply is not None
    return dns.rcode.to_text(reply.rcode()), (reply.answer[0].ttl if reply.answer else None)


def upstream_calls(config: Config, client: str = XA_CLIENT) -> list[tuple[Any, ...]]:
    """(server, timeout, EDNS payload) of every upstream attempt for one query."""
    chain = Chain(config)
    chain.upstream.failing = True  # so that every attempt of every server shows
    chain.ask("www.example.test", client=client)
    return [(s, t, m.payload) for s, t, m in chain.upstream.asked]


# -- a real listener ----------------------------------------------------------------------


def with_gateway(config: Config, use: Callable[[Any], Any]) -> Any:
    """Start a real gateway for ``config`` (scripted upstream), give it to ``use``."""
    from clearwall.dnsserver.gateway import build_gateway

    async def run() -> Any:
        gw = build_gateway(config.dns, POLICY, transport=Scripted())
        await gw.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, use, gw)
        finally:
            await gw.stop()

    return asyncio.run(run())


def tcp_query(host: str, port: int) -> bytes:
    query = dns.message.make_query("www.example.test", "A").to_wire()
    return len(query).to_bytes(2, "big") + query


def idle_closed(gw: Any) -> bool:
    """Whether the server closes an idle TCP connection within three seconds."""
    host, port = gw.server.addresses[0]
    with socket.create_connection((host, port), timeout=3) as conn:
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False


def tcp_answered(conn: socket.socket) -> bool:
    """Whether one whole length-prefixed reply arrives on ``conn``."""
    try:
        head = conn.recv(2)
        if len(head) < 2:
            return False
        want, got = int.from_bytes(head, "big"), b""
        while len(got) < want:
            chunk = conn.recv(want - len(got))
            if not chunk:
                return False
            got += chunk
        return True
    except (TimeoutError, ConnectionError):
        return False


def first_tcp_kept(gw: Any) -> bool:
    """Whether an idle TCP connection is still served after a second one was answered
    (a full table closes the connection idle longest to admit the newcomer)."""
    host, port = gw.server.addresses[0]
    with socket.create_connection((host, port), timeout=3) as first:
        first.sendall(tcp_query(host, port))
        assert tcp_answered(first)
        with socket.create_connection((host, port), timeout=3) as second:
            second.sendall(tcp_query(host, port))
            assert tcp_answered(second)
            try:
                first.sendall(tcp_query(host, port))
            except ConnectionError:
                return False
            return tcp_answered(first)


# -- encrypted listeners and upstreams ------------------------------------------------------


def tls_pair(tmp: Path, name: str = "tls") -> dict[str, str]:
    """A self-signed certificate and key in ``tmp/name`` (made once)."""
    from clearwall.dnsserver.tls import make_self_signed

    cert, key = tmp / name / "cert.pem", tmp / name / "key.pem"
    make_self_signed(cert, key)
    return {"tls_cert": str(cert), "tls_key": str(key)}


def encrypted_context(tmp: Path) -> dict[str, Any]:
    """Loopback listeners on port 0, with a certificate (no encrypted listener yet)."""
    return {"dns": {"listen": ["127.0.0.1:0"], **tls_pair(tmp)}}


def with_dot(tmp: Path) -> dict[str, Any]:
    """As ``encrypted_context``, with a DoT listener."""
    context = encrypted_context(tmp)
    context["dns"]["dot"] = ["127.0.0.1:0"]
    return context


def speaks(gw: Any) -> dict[str, int]:
    """The rcode each bound encrypted listener gives a real client (no verification:
    what is observed is whether it answers)."""
    import ssl

    import dns.query

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    query = dns.message.make_query("www.example.test", "A")
    out = {}
    for host, port in gw.server.encrypted["dot"]:
        out["dot"] = dns.query.tls(query, host, port=port, ssl_context=insecure, timeout=5).rcode()
    for host, port in gw.server.encrypted["doh"]:
        url = f"https://{host}:{port}/dns-query"
        out["doh"] = dns.query.https(query, url, verify=False, timeout=5).rcode()
    for host, port in gw.server.encrypted["doq"]:
        out["doq"] = dns.query.quic(query, host, port=port, verify=False, timeout=5).rcode()
    return out


def dot_reply(gw: Any) -> tuple[str, int]:
    """The certificate's fingerprint a DoT client sees and the length of an EDNS reply."""
    import hashlib
    import ssl

    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    host, port = gw.server.encrypted["dot"][0]
    query = dns.message.make_query("www.example.test", "A", use_edns=0).to_wire()
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        insecure.wrap_socket(raw) as conn,
    ):
        conn.sendall(len(query).to_bytes(2, "big") + query)
        size = int.from_bytes(conn.recv(2), "big")
        der = conn.getpeercert(binary_form=True) or b""
    return hashlib.sha256(der).hexdigest()[:16], size


def served_or_refused(config: Config, observe: Callable[[Any], Any]) -> Any:
    """What ``observe`` sees of a gateway for ``config``, or the start-up error."""
    try:
        return with_gateway(config, observe)
    except ConfigError as exc:
        return f"refused: {str(exc).split(':', 1)[0]}"


def through_dot_upstream(config: Config) -> str:
    """The rcode a chain built from ``config`` gets for a name when its only upstream is
    a real DoT listener (a second gateway) whose certificate is the test pair's."""
    tmp = Path(config.dns.tls_cert).parent.parent
    back = load_config(
        None, {"dns": {"listen": ["127.0.0.1:0"], "dot": ["127.0.0.1:0"], **tls_pair(tmp)}}
    )

    def use(gw: Any) -> str:
        port = gw.server.encrypted["dot"][0][1]
        servers = (EncryptedUpstream.parse(f"tls://127.0.0.1:{port}#clearwall.localhost"),)
        upstream = dataclasses.replace(config.dns.upstream, servers=servers, attempts=1)
        front = dataclasses.replace(config, dns=dataclasses.replace(config.dns, upstream=upstream))
        return Chain(front).rcode()

    return str(with_gateway(back, use))


# -- a store, the CLI and `clearwall serve` -------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite store with a jurisdiction, an authority and an order (id 1)."""
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec
    from clearwall.store import PolicyService, open_store

    where = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{where / 'cw.db'}"
    # `clearwall init` makes the store and its ledger key: a gateway signs and publishes
    # what it enforces, so it needs the key beside the store.
    cli(["init", "--db", url], where)
    service = PolicyService(open_store(url, migrate=True))
    service.add_jurisdiction("xa", "A", ["10.77.1.0/24"])
    court = service.add_authority("Court", "court", "xa")
    rules = [RuleSpec(RuleKind.SUBTREE, "blocked.example")]
    service.add_order(court.id, "T", "L", "R", "court-order", "nxdomain", rules)
    service.store.dispose()
    return url


def cli(argv: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    done = subprocess.run(
        [sys.executable, "-m", "clearwall", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def init_and_key(file: Path) -> tuple[list[str], str]:
    """What `clearwall init` writes (files under the config's directory, which is also the
    working directory) and the first field of `clearwall ledger key`."""
    where = file.parent
    cli(["init", "--config", file.name], where)
    key = cli(["ledger", "key", "--config", file.name], where).split("+", 1)[0]
    files = sorted(str(p.relative_to(where)) for p in where.rglob("*") if p.is_file() and p != file)
    return [f for f in files if not f.endswith(("-wal", "-shm"))], key


def signer_vkey(tmp: Path) -> str:
    """Make a signer key at ``tmp/signer.key`` (for the example's origin); its vkey."""
    from clearwall.ledger.signing import create_key_file

    return create_key_file(tmp / "signer.key", "clearwall.example/log")


def sync_without_key(config: Config, file: Path) -> bool:
    """`clearwall init`, then `clearwall ledger sync` on a node whose key file is gone
    (one of several gateways sharing a store): whether it fails."""
    where = file.parent
    cli(["init", "--config", file.name], where)
    key = config.ledger.key_path()
    key.rename(key.with_name("signer.key.away"))
    try:
        out = cli(["ledger", "sync", "--config", file.name], where)
    finally:
        key.with_name("signer.key.away").rename(key)
    return "error" in out


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def serve(file: Path, store_url: str) -> dict[str, Any]:
    """Run `clearwall serve` with ``file`` until its DNS answers; what an operator sees:
    DNS worker processes and their scheduling policy, the web listeners answering, the
    log's INFO lines."""
    port = free_port()
    config = load_config(file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "clearwall", "serve", "--config", file.name),
            *("--db", store_url, "--dns", f"127.0.0.1:{port}", "--upstream", "127.0.0.1:9"),
        ],
        cwd=file.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        query = dns.message.make_query("x.test", "A")
        while True:
            try:
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
                break
            except (dns.exception.Timeout, OSError):
                if proc.poll() is not None:
                    raise AssertionError(f"serve exited: {proc.communicate()[0][-2000:]}") from None
                assert time.monotonic() < deadline, "not serving after 60 s"
        # The DNS workers are forked children; the policy compiler (clearwall.control)
        # and the jobs (clearwall.jobs) are children too, and not workers.
        workers = [
            pid
            for pid in children(proc.pid)
            if not any(
                m in Path(f"/proc/{pid}/cmdline").read_bytes()
                for m in (b"clearwall.control", b"clearwall.jobs")
            )
        ]
        seen["workers"] = len(workers)
        seen["sched"] = sorted({os.sched_getscheduler(w) for w in workers})
        for what, listen in (("web", config.web.listen), ("pages", config.web.blockpage_listen)):
            seen[what] = None
            if listen is not None:
                for _ in range(50):
                    try:
                        seen[what] = httpx.get(f"http://{listen}/", timeout=2).status_code
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    seen["info"] = " INFO " in out
    return seen


# -- the control plane ---------------------------------------------------------------------


def _add_order(store_url: str, reference: str) -> None:
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec
    from clearwall.store import PolicyService, open_store

    service = PolicyService(open_store(store_url))
    rules = [RuleSpec(RuleKind.SUBTREE, f"{reference.lower()}.example")]
    service.add_order(1, "T", "L", reference, "court-order", "nxdomain", rules)
    service.store.dispose()


def source(config: Config, store_url: str, directory: Path) -> Any:
    from clearwall.dnsserver.options import ServeOptions
    from clearwall.dnsserver.workers import _initial_policy

    opts = ServeOptions(config=config, store_url=store_url, snapshot_dir=directory / "snaps")
    _path, src = _initial_policy(opts)
    assert src is not None
    return src


def change_published_within(config: Config, store_url: str, directory: Path) -> bool:
    """Whether a change to the store is published by the polling thread within 5 s."""
    src = source(config, store_url, directory)
    published = threading.Event()
    src.publish = lambda _path, _equivalent: published.set()
    src.start()
    try:
        _add_order(store_url, f"POLL-{time.time_ns()}")
        return published.wait(5)
    finally:
        src.stop()


def consolidated_at_once(config: Config, store_url: str, directory: Path) -> bool:
    """Whether the round right after a change (published as an overlay) consolidates."""
    src = source(config, store_url, directory)
    equivalents: list[bool] = []
    src.publish = lambda _path, equivalent: equivalents.append(equivalent)
    try:
        _add_order(store_url, f"CONS-{time.time_ns()}")
        src.poll()  # the overlay
        src.poll()  # quiet since: consolidates when consolidate_after allows
        assert src.wait_consolidated(60)
        src.poll()
        return True in equivalents
    finally:
        src.stop()


class Lists(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"sub-one.example\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def background_refresh(config: Config, store_url: str) -> str:
    """What a background refresh of a list on a loopback (internal) URL records."""
    from clearwall.jobs.runner import Jobs, refresh
    from clearwall.store import PolicyService, open_store

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Lists)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = PolicyService(open_store(store_url))
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/list.txt"
        sub = service.add_subscription(1, url, "domains", 3600)
        refresh(Jobs.open(config, store_url))  # the job `serve` runs every minute
        [after] = [s for s in PolicyReader(service.store).subscriptions() if s.id == sub.id]
        return after.last_status.split(":", 1)[0]
    finally:
        server.shutdown()
        service.store.dispose()


# -- federation -------------------------------------------------------------------------


def mirror_passes(config: Config, file: Path) -> int:
    """How many times ``serve``'s jobs try a mirrored registry in 100 s (a fake clock;
    the registry is unreachable, so each pass is counted on the mirror as a failure)."""
    from clearwall.federation import records
    from clearwall.jobs.runner import Jobs, run_forever
    from clearwall.ledger.signing import generate_signer
    from clearwall.store import PolicyService, open_store

    url = f"sqlite:///{file.parent / 'mirror.db'}"
    cli(["init", "--db", url], file.parent)
    service = PolicyService(open_store(url))
    service.add_jurisdiction("xa", "A", [])
    vkey = generate_signer("registry.example/log").verifier.vkey
    records.add(service.store, "http://127.0.0.1:9", vkey, {"xa": "xa"})
    now = [0.0]

    class Until100(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            now[0] += timeout or 0.0
            if now[0] >= 100:
                self.set()
            return self.is_set()

    run_forever(Jobs.open(config, url), Until100(), upkeep_every=3600, clock=lambda: now[0])
    [mirror] = records.list_all(service.store)
    service.store.dispose()
    return mirror.failures


# -- the log's witnesses -----------------------------------------------------------------

WITNESSES: dict[str, Any] = {}  # url -> the real `clearwall witness serve` behind it


def witness(tmp: Path, name: str) -> dict[str, str]:
    """A witness endpoint for the config; its real process is started by ``published``."""
    from tests.witness.processes import WitnessProcess

    w = WitnessProcess(tmp / "witnesses" / name, f"{name}.example/witness")
    WITNESSES[w.url] = w
    return {"url": w.url, "vkey": w.vkey}


def silent_witness() -> dict[str, str]:
    """A witness endpoint that accepts connections and never answers."""
    from clearwall.ledger.cosignature import generate_cosigner

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    WITNESSES[f"silent:{listener.getsockname()[1]}"] = listener  # kept open, never read
    vkey = generate_cosigner("silent.example/witness", b"\x07" * 32).verifier.vkey
    return {"url": f"http://127.0.0.1:{listener.getsockname()[1]}", "vkey": vkey}


def absent_witness() -> dict[str, str]:
    """A witness endpoint where nothing listens (connections are refused at once)."""
    from clearwall.ledger.cosignature import generate_cosigner

    vkey = generate_cosigner("absent.example/witness", b"\x09" * 32).verifier.vkey
    return {"url": f"http://127.0.0.1:{free_port()}", "vkey": vkey}


def published(
    file: Path, *, late: bool = False, wait: float | None = None
) -> tuple[int, float, bool]:
    """Publish one order with the CLI from the config's directory, as an operator would;
    return the cosignatures on the checkpoint it published, how long the publication took,
    and whether the portal calls the log witnessed. With ``late`` the witnesses start only
    after the publication, and the jobs (their witness retries) run for ``wait`` seconds."""
    from fastapi.testclient import TestClient

    from clearwall.jobs.runner import Jobs, run_forever
    from clearwall.ledger.note import split_note
    from clearwall.web.app import create_app

    where = file.parent
    config = load_config(file)
    cli(["init", "--config", file.name], where)
    log_vkey = cli(["ledger", "key", "--config", file.name], where).strip()
    started = []
    for endpoint in config.ledger.witnesses:
        w = WITNESSES.get(endpoint.url)
        if w is not None and hasattr(w, "add_log"):
            w.add_log(config.ledger.origin, log_vkey)
            started.append(w)
    try:
        if not late:
            for w in started:
                w.start()
        cli(
            [
                "jurisdictions",
                "add",
                "xa",
                "--name",
                "A",
                "--network",
                "10.0.0.0/8",
                "--config",
                file.name,
            ],
            where,
        )
        cli(
            [
                "authorities",
                "add",
                "--name",
                "Court",
                "--kind",
                "court",
                "--jurisdiction",
                "xa",
                "--config",
                file.name,
            ],
            where,
        )
        (where / "list.txt").write_text("witnessed.example\n")
        begin = time.monotonic()
        cli(
            [
                "orders",
                "add",
                "--authority",
                "1",
                "--title",
                "T",
                "--legal-basis",
                "L",
                "--reference",
                "R",
                "--category",
                "court-order",
                "--action",
                "nxdomain",
                "--rules",
                "list.txt",
                "--config",
                file.name,
            ],
            where,
        )
        took = time.monotonic() - begin
        witnessed = False
        if late:
            for w in started:
                w.start()
        if wait is not None:
            cwd = os.getcwd()
            os.chdir(where)  # the config's relative paths, as `serve` run from there
            try:
                stop = threading.Event()
                jobs = Jobs.open(config, config.store.url)
                runner = threading.Thread(target=run_forever, args=(jobs, stop))
                runner.start()
                time.sleep(wait)
                stop.set()
                runner.join()
                with TestClient(create_app(config, config.store.url)) as client:
                    witnessed = "not yet witnessed" not in client.get("/log").text
            finally:
                os.chdir(cwd)
        [checkpoint] = [p for p in where.rglob("checkpoint") if p.is_file()]
        return len(split_note(checkpoint.read_text())[1]) - 1, round(took), witnessed
    finally:
        for w in started:
            w.stop()


# -- the query log ----------------------------------------------------------------------------

XA6_CLIENT = "2001:db8:77::20"  # an IPv6 client of xa


def query_logged(config: Config, plant: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """What the query log kept of three names asked by an IPv4 and an IPv6 client of xa
    (``plant`` may put an old segment in the directory first), and what it dropped."""
    from clearwall.dnsserver.gateway import build_gateway
    from clearwall.querylog import Filters, QueryLogReader

    directory = Path(config.logging.query_log_dir)
    if plant is not None:
        plant(directory)

    async def run() -> int:
        gw = build_gateway(config.dns, POLICY, transport=Scripted(), logging_config=config.logging)
        for i in range(3):
            for client in (XA_CLIENT, XA6_CLIENT):
                query = dns.message.make_query(f"n{i}.example.test", "A").to_wire()
                await gw.resolve(query, client=client)
        dropped = gw.metrics.querylog_dropped
        if gw.querylog is not None:
            gw.querylog.stop()
        return dropped

    dropped = asyncio.run(run())
    entries = QueryLogReader(directory).search(Filters(), 100)
    root = directory.parent
    return {
        "clients": sorted({e.client for e in entries}),
        "records": sum(e.count for e in entries),
        "dropped": dropped,
        "where": sorted(str(p.parent.relative_to(root)) for p in root.rglob("q-*.sqlite")),
        "planted": sorted(p.name for p in directory.glob("q-1000.*")),
    }


def old_segment(days: float, size: int = 0) -> Callable[[Path], None]:
    """Put a segment last written ``days`` ago (of ``size`` bytes) in a directory."""

    def plant(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "q-1000.000000-w9.sqlite"
        path.write_bytes(b"\0" * size)
        when = time.time() - days * 86400
        os.utime(path, (when, when))

    return plant


def query_log_on(tmp: Path) -> dict[str, Any]:
    return {"logging": {"query_log": True, "query_log_dir": str(tmp / "ql")}}


# -- the RPZ primary ([xfr]) ---------------------------------------------------------------

CENSORED = "xa.censored.rpz.clearwall."
XFR = {"xfr": {"listen": ["127.0.0.1:0"]}}  # the primary is off without an address
NOTIFY_LISTENERS: dict[Path, socket.socket] = {}  # a test's tmp_path -> its listener
METRICS_PORTS: dict[Path, int] = {}  # a test's tmp_path -> the port metrics_listen names


def with_primary(config: Config, store_url: str, use: Callable[[Any], Any]) -> Any:
    """Start a real primary for ``config`` over the store (in a thread of this process),
    give it to ``use``, stop it."""
    from clearwall.store import open_store
    from xfr.conftest import RunningPrimary

    store = open_store(store_url)
    running = RunningPrimary(config, store).start()
    try:
        return use(running)
    finally:
        running.stop()
        store.dispose()


def xfr_address(running: Any) -> tuple[str, int]:
    host, port = running.primary.server.addresses[0][:2]
    return str(host), int(port)


def soa(running: Any, zone: str = CENSORED) -> dns.message.Message:
    """A real SOA answer of the running primary, over UDP."""
    host, port = xfr_address(running)
    return dns.query.udp(dns.message.make_query(zone, "SOA"), host, port=port, timeout=5)


def soa_rdata(running: Any) -> Any:
    reply = soa(running)
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return reply.answer[0][0]


def xfr_rcodes(*zones: str) -> Callable[[Any], tuple[str, ...]]:
    return lambda running: tuple(dns.rcode.to_text(soa(running, z).rcode()) for z in zones)


def primary_of(observe: Callable[[Any], Any]) -> Observe:
    return lambda config, _file, store: with_primary(config, store, observe)


def new_serial_within(store_url: str, seconds: float) -> Callable[[Any], bool]:
    """Whether the primary serves a new serial within ``seconds`` of an order's commit."""

    def observe(running: Any) -> bool:
        before = soa_rdata(running).serial
        _add_order(store_url, f"XFR-{time.time_ns()}")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if soa_rdata(running).serial != before:
                return True
            time.sleep(0.05)
        return False

    return observe


def ixfr_kind(store_url: str) -> Callable[[Any], str]:
    """What an IXFR from two versions back gets: a difference or the whole zone."""

    def observe(running: Any) -> str:
        oldest = soa_rdata(running).serial
        for _ in range(2):
            serial = soa_rdata(running).serial
            _add_order(store_url, f"IXFR-{time.time_ns()}")
            deadline = time.monotonic() + 30
            while soa_rdata(running).serial == serial:
                assert time.monotonic() < deadline, "the primary did not follow the log"
                time.sleep(0.05)
        query = dns.message.make_query(CENSORED, "IXFR")
        query.authority.append(
            dns.rrset.from_text(CENSORED, 0, "IN", "SOA", f". . {oldest} 1 1 1 1")
        )
        wire = query.to_wire()
        with socket.create_connection(xfr_address(running), timeout=5) as conn:
            conn.sendall(len(wire).to_bytes(2, "big") + wire)
            reader = conn.makefile("rb")
            length = int.from_bytes(reader.read(2), "big")
            first = dns.message.from_wire(reader.read(length), one_rr_per_rrset=True)
        # RFC 1995 section 4: a difference opens with the new SOA, then the old one.
        return "difference" if first.answer[1].rdtype == dns.rdatatype.SOA else "whole zone"

    return observe


def tcp_soa_query() -> bytes:
    query = dns.message.make_query(CENSORED, "SOA").to_wire()
    return len(query).to_bytes(2, "big") + query


def second_tcp_client_served(running: Any) -> bool:
    """Whether a second TCP client is answered while a first one holds its connection."""
    address = xfr_address(running)
    with socket.create_connection(address, timeout=3) as first:
        first.sendall(tcp_soa_query())
        assert tcp_answered(first)  # registered before the second one comes
        with socket.create_connection(address, timeout=3) as second:
            try:
                second.sendall(tcp_soa_query())
            except ConnectionError:
                return False
            return tcp_answered(second)


def xfr_idle_closed(running: Any) -> bool:
    """Whether the primary closes an idle TCP connection within three seconds."""
    with socket.create_connection(xfr_address(running), timeout=3) as conn:
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False


def notify_listener(tmp: Path) -> str:
    """A real UDP socket that takes NOTIFYs and never answers; the secondary entry."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    NOTIFY_LISTENERS[tmp] = listener
    return f"127.0.0.1:{listener.getsockname()[1]} for xa"


def notifies(running: Any, tmp: Path, enough: int, seconds: float = 3.0) -> list[str]:
    """The zones of the NOTIFYs the test's listener receives in ``seconds`` from the
    primary's start (stopping early at ``enough``)."""
    listener = NOTIFY_LISTENERS.get(tmp)
    if listener is None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # nothing sent here
        listener.bind(("127.0.0.1", 0))
        NOTIFY_LISTENERS[tmp] = listener
    zones: list[str] = []
    deadline = time.monotonic() + seconds
    while len(zones) < enough and (left := deadline - time.monotonic()) > 0:
        listener.settimeout(left)
        try:
            message = dns.message.from_wire(listener.recv(4096))
        except TimeoutError:
            break
        if message.opcode() == dns.opcode.NOTIFY:
            zones.append(str(message.question[0].name))
    return zones


def drained(tmp: Path) -> None:
    """Drop what the listener kept from an earlier run (each run starts afresh)."""
    listener = NOTIFY_LISTENERS.get(tmp)
    if listener is not None:
        listener.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.recv(4096)
        listener.setblocking(True)


def notified(enough: int, seconds: float = 3.0) -> Observe:
    """The NOTIFYs a real listener gets from a primary run with the config."""

    def observe(config: Config, file: Path, store: str) -> list[str]:
        tmp = file.parent.parent
        drained(tmp)
        return with_primary(config, store, lambda running: notifies(running, tmp, enough, seconds))

    return observe


def censored_notifies(enough: int, seconds: float) -> Observe:
    inner = notified(enough * 2, seconds)
    return lambda c, f, s: min(sum(z == CENSORED for z in inner(c, f, s)), enough)


def metrics_port(tmp: Path) -> str:
    METRICS_PORTS[tmp] = free_port()
    return f"127.0.0.1:{METRICS_PORTS[tmp]}"


def xfr_metrics(config: Config, file: Path, store: str) -> str:
    """What a Prometheus scrape of the test's metrics port gets while the primary runs."""
    port = METRICS_PORTS[file.parent.parent]

    def scrape(_running: Any) -> str:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.TransportError:
            return "nothing listens"
        return "serial" if f'clearwall_xfr_zone_serial{{zone="{CENSORED}"}}' in body else body

    return with_primary(config, store, scrape)


def tsig_key_file(tmp: Path) -> str:
    from clearwall.xfr.keys import add_key

    add_key(tmp / "tsig" / "xfr.keys", "resolver1")
    return str(tmp / "tsig" / "xfr.keys")


# -- the table -------------------------------------------------------------------------------

Observe = Callable[[Config, Path, str], Any]  # (config, its file, store url) -> observation
RATE = {"dns": {"ratelimit": {"queries_per_second": 1.0, "burst": 2.0}}}
ON_PORT_0 = {"dns": {"listen": ["127.0.0.1:0"]}}
NO_WEB = {"web": {"listen": "", "blockpage_listen": ""}}


def chain_of(observe: Callable[[Chain], Any], ttl: int = 300) -> Observe:
    return lambda config, _file, _store: observe(Chain(config, ttl))


EFFECTS: dict[str, tuple[Any, Observe, dict[str, Any]]] = {
    # option: (changed value, observation, context applied to both runs)
    "store.url": ("sqlite:///elsewhere/cw.db", lambda c, f, s: init_and_key(f)[0], {}),
    "ledger.key_file": ("keys/signer.key", lambda c, f, s: init_and_key(f)[0], {}),
    "ledger.tiles_dir": ("public/log", lambda c, f, s: init_and_key(f)[0], {}),
    "ledger.origin": ("example.org/log", lambda c, f, s: init_and_key(f)[1], {}),
    "ledger.witnesses": (
        lambda tmp: [witness(tmp, "w1")],
        lambda c, f, s: published(f)[0],
        {"ledger": {"witnesses": [absent_witness()], "witness_quorum": 1}},
    ),
    "ledger.witness_quorum": (
        2,
        lambda c, f, s: published(f, wait=0)[2],
        lambda tmp: {
            "ledger": {"witnesses": [witness(tmp, "q1"), absent_witness()], "witness_quorum": 1}
        },
    ),
    "ledger.witness_timeout": (
        8.0,
        lambda c, f, s: published(f)[1] >= 5,
        lambda tmp: {
            "ledger": {"witnesses": [silent_witness()], "witness_quorum": 1, "witness_timeout": 1.0}
        },
    ),
    "ledger.witness_retry": (
        1.0,
        lambda c, f, s: published(f, late=True, wait=6)[0],
        lambda tmp: {"ledger": {"witnesses": [witness(tmp, "r1")], "witness_quorum": 1}},
    ),
    "ledger.vkey": (
        signer_vkey,
        lambda c, f, s: sync_without_key(c, f),
        lambda tmp: {"ledger": {"key_file": str(tmp / "signer.key")}},
    ),
    "dns.listen": (
        ["127.0.0.2:0"],
        lambda c, f, s: with_gateway(c, lambda gw: gw.server.addresses[0][0]),
        ON_PORT_0,
    ),
    "dns.allow_networks": (
        ["198.51.100.0/24"],
        chain_of(lambda ch: ch.rcode(client="198.51.100.9")),
        {},
    ),
    "dns.default_jurisdiction": (
        "xa",
        chain_of(lambda ch: ch.rcode("xa-only.test", client="127.0.0.1")),
        {},
    ),
    "dns.workers": (2, lambda c, f, s: serve(f, s)["workers"], NO_WEB),
    "dns.batch_scheduling": (
        False,
        lambda c, f, s: serve(f, s)["sched"],
        {**NO_WEB, "dns": {"workers": 2}},
    ),
    "dns.tcp_idle_timeout": (0.2, lambda c, f, s: with_gateway(c, idle_closed), ON_PORT_0),
    "dns.max_tcp_connections": (
        1,
        lambda c, f, s: with_gateway(c, first_tcp_kept),
        ON_PORT_0,
    ),
    "dns.max_inflight": (0, chain_of(lambda ch: ch.rcode()), {}),
    "dns.reload_interval": (
        3600.0,
        lambda c, f, s: change_published_within(c, s, f.parent),
        {},
    ),
    "dns.consolidate_after": (
        0.0,
        lambda c, f, s: consolidated_at_once(c, s, f.parent),
        {"dns": {"consolidate_after": 3600.0}},
    ),
    "dns.udp_batch": (0, lambda c, f, s: with_gateway(c, lambda gw: gw.server.udp_mode), ON_PORT_0),
    "dns.dot": (["127.0.0.1:0"], lambda c, f, s: with_gateway(c, speaks), encrypted_context),
    "dns.doh": (["127.0.0.1:0"], lambda c, f, s: with_gateway(c, speaks), encrypted_context),
    "dns.doq": (["127.0.0.1:0"], lambda c, f, s: with_gateway(c, speaks), encrypted_context),
    "dns.tls_cert": (
        lambda tmp: tls_pair(tmp, "other")["tls_cert"],
        lambda c, f, s: served_or_refused(c, dot_reply),
        with_dot,
    ),
    "dns.tls_key": (
        lambda tmp: tls_pair(tmp, "other")["tls_key"],
        lambda c, f, s: served_or_refused(c, dot_reply),
        with_dot,
    ),
    "dns.padding_block": (128, lambda c, f, s: with_gateway(c, dot_reply)[1], with_dot),
    "dns.upstream.servers": (
        ["192.0.2.53"],
        lambda c, f, s: {call[0] for call in upstream_calls(c)},
        {},
    ),
    "dns.upstream.resolv_conf": (
        lambda tmp: str(tmp / "other-resolv.conf"),  # names 192.0.2.99
        lambda c, f, s: {call[0] for call in upstream_calls(c)},
        {"dns": {"upstream": {"servers": []}}},
    ),
    "dns.upstream.per_jurisdiction": (
        {"xa": ["192.0.2.77"]},
        lambda c, f, s: {call[0] for call in upstream_calls(c)},
        {},
    ),
    "dns.upstream.timeout": (0.2, lambda c, f, s: {call[1] for call in upstream_calls(c)}, {}),
    "dns.upstream.attempts": (5, lambda c, f, s: len(upstream_calls(c)), {}),
    "dns.upstream.ca_file": (
        lambda tmp: tls_pair(tmp)["tls_cert"],
        lambda c, f, s: through_dot_upstream(c),
        encrypted_context,
    ),
    "dns.upstream.edns_buffer": (
        4000,
        lambda c, f, s: {call[2] for call in upstream_calls(c)},
        {},
    ),
    "dns.cache.max_entries": (0, lambda c, f, s: asked_again_after(c, 0), {}),
    "dns.cache.min_ttl": (3600, lambda c, f, s: asked_again_after(c, 600), {}),
    "dns.cache.max_ttl": (60, lambda c, f, s: asked_again_after(c, 120), {}),
    "dns.cache.negative_ttl": (60, lambda c, f, s: asked_again_after(c, 120, "nx.test"), {}),
    "dns.cache.serve_stale": (False, lambda c, f, s: stale(c, 10)[0], {}),
    "dns.cache.stale_ttl": (7, lambda c, f, s: stale(c, 10)[1], {}),
    "dns.cache.max_stale": (100, lambda c, f, s: stale(c, 200)[0], {}),
    "dns.ratelimit.enabled": (
        False,
        chain_of(lambda ch: answered(ch, [XA_CLIENT], 5)),
        RATE,
    ),
    "dns.ratelimit.queries_per_second": (50.0, chain_of(lambda ch: refill(ch)), RATE),
    "dns.ratelimit.burst": (5.0, chain_of(lambda ch: answered(ch, [XA_CLIENT], 5)), RATE),
    "dns.ratelimit.ipv4_prefix": (
        32,
        chain_of(lambda ch: answered(ch, ["10.77.1.20", "10.77.1.21"], 2)),
        RATE,
    ),
    "dns.ratelimit.ipv6_prefix": (
        128,
        chain_of(lambda ch: answered(ch, ["2001:db8:77::1:1", "2001:db8:77::2:1"], 2)),
        RATE,
    ),
    "dns.ratelimit.slip": (0, chain_of(lambda ch: answered(ch, [XA_CLIENT], 6)), RATE),
    "dns.ratelimit.exempt_loopback": (
        False,
        chain_of(lambda ch: answered(ch, ["127.0.0.1"], 5)),
        RATE,
    ),
    "dns.block.ttl": (5, chain_of(lambda ch: ttl(ch.ask("sink.test"))), {}),
    "dns.block.sinkhole_ipv4": (
        "192.0.2.80",
        chain_of(lambda ch: ch.ask("sink.test").answer[0][0].to_text()),  # type: ignore[union-attr]
        {},
    ),
    "dns.block.sinkhole_ipv6": (
        "2001:db8::80",
        chain_of(lambda ch: ch.ask("sink.test", "AAAA").answer[0][0].to_text()),  # type: ignore[union-attr]
        {},
    ),
    "dns.block.language": ("fr", chain_of(lambda ch: sde(ch.ask("sink.test")).get("l")), {}),
    "dns.block.operator": ("ISP", chain_of(lambda ch: sde(ch.ask("sink.test")).get("o")), {}),
    "dns.block.public_url": (
        "https://portal.example",
        chain_of(lambda ch: sde(ch.ask("sink.test")).get("j")),
        {},
    ),
    "dns.upstream.minimal_responses": (
        False,
        chain_of(lambda ch: len(ch.ask("auth.example.test").authority)),  # type: ignore[union-attr]
        {},
    ),
    "dns.special_use.forward": (
        ["10.in-addr.arpa"],
        chain_of(lambda ch: (ch.ask("1.0.0.10.in-addr.arpa", "PTR"), len(ch.upstream.asked))[1]),
        {},
    ),
    "web.listen": (
        lambda _tmp: f"127.0.0.1:{free_port()}",
        lambda c, f, s: serve(f, s)["web"],
        NO_WEB,
    ),
    "web.blockpage_listen": (
        lambda _tmp: f"127.0.0.1:{free_port()}",
        lambda c, f, s: serve(f, s)["pages"],
        NO_WEB,
    ),
    "web.subscriptions_fetch_internal": (True, lambda c, f, s: background_refresh(c, s), {}),
    "federation.interval": (30.0, lambda c, f, s: mirror_passes(c, f), {}),
    "logging.level": ("WARNING", lambda c, f, s: serve(f, s)["info"], NO_WEB),
    "logging.query_log": (
        True,
        lambda c, f, s: query_logged(c)["records"],
        lambda tmp: {"logging": {"query_log_dir": str(tmp / "ql")}},
    ),
    "logging.client_prefix_v4": (16, lambda c, f, s: query_logged(c)["clients"], query_log_on),
    "logging.client_prefix_v6": (32, lambda c, f, s: query_logged(c)["clients"], query_log_on),
    "logging.query_log_dir": (
        lambda tmp: str(tmp / "elsewhere"),
        lambda c, f, s: query_logged(c)["where"],
        query_log_on,
    ),
    "logging.query_log_max_mb": (
        1,
        lambda c, f, s: query_logged(c, old_segment(0.1, 2 * 1024 * 1024))["planted"],
        query_log_on,
    ),
    "logging.query_log_max_days": (
        0.5,
        lambda c, f, s: query_logged(c, old_segment(2.0))["planted"],
        query_log_on,
    ),
    "logging.query_log_queue": (2, lambda c, f, s: query_logged(c)["dropped"], query_log_on),
    "xfr.listen": (
        ["127.0.0.2:0"],
        primary_of(lambda running: (xfr_address(running)[0], soa(running).rcode())),
        XFR,
    ),
    "xfr.suffix": (
        "rpz.example.net.",
        primary_of(xfr_rcodes(CENSORED, "xa.censored.rpz.example.net.")),
        XFR,
    ),
    "xfr.allow": (["192.0.2.0/24"], primary_of(xfr_rcodes(CENSORED)), XFR),
    "xfr.keys_file": (tsig_key_file, primary_of(xfr_rcodes(CENSORED)), XFR),
    "xfr.secondaries": (lambda tmp: [notify_listener(tmp)], notified(2), XFR),
    "xfr.ttl": (5, primary_of(lambda running: soa(running).answer[0].ttl), XFR),
    "xfr.refresh": (7, primary_of(lambda running: soa_rdata(running).refresh), XFR),
    "xfr.retry": (3, primary_of(lambda running: soa_rdata(running).retry), XFR),
    "xfr.expire": (86400, primary_of(lambda running: soa_rdata(running).expire), XFR),
    "xfr.history": (
        1,
        lambda c, f, s: with_primary(c, s, ixfr_kind(s)),
        XFR,
    ),
    "xfr.reload_interval": (
        3600.0,
        lambda c, f, s: with_primary(c, s, new_serial_within(s, 5.0)),
        XFR,
    ),
    "xfr.notify_timeout": (
        0.05,
        censored_notifies(2, 3.0),
        lambda tmp: merged(
            XFR,
            {
                "xfr": {
                    "secondaries": [notify_listener(tmp)],
                    "notify_timeout": 30.0,
                    "notify_retries": 1,
                }
            },
        ),
    ),
    "xfr.notify_retries": (
        0,
        censored_notifies(3, 2.0),
        lambda tmp: merged(
            XFR, {"xfr": {"secondaries": [notify_listener(tmp)], "notify_timeout": 0.05}}
        ),
    ),
    "xfr.idle_timeout": (0.2, primary_of(xfr_idle_closed), XFR),
    "xfr.max_connections": (1, primary_of(second_tcp_client_served), XFR),
    "xfr.metrics_listen": (metrics_port, xfr_metrics, XFR),
}


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted option names of a TOML document; a table of free keys is one option."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "dns.upstream.per_jurisdiction":
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def nest(dotted: str, value: Any) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    return {head: nest(rest, value) if rest else value}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def config_fields(cls: type[Any] = Config, prefix: str = "") -> set[str]:
    """Dotted names of every option the loader accepts."""
    names = set()
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        if dataclasses.is_dataclass(default) and not isinstance(default, HostPort):
            names |= config_fields(type(default), f"{prefix}{f.name}.")
        else:
            names.add(f"{prefix}{f.name}")
    return names


EXAMPLE_DATA = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


TABLES = {"store", "ledger", "dns", "dns.upstream", "dns.cache", "dns.special_use",
          "dns.ratelimit", "dns.block", "web", "logging"}  # fmt: skip
"""The config's sections (``dns.upstream.per_jurisdiction`` is a table of free keys)."""


def commented_options(text: str) -> set[str]:
    """Options the example documents unset, as ``# name = value`` lines of a section
    (``[ledger] key_file``: unset, a SQLite store's ledger lives beside it)."""
    found, section = set(), ""
    for line in text.splitlines():
        if line.startswith("[") and line.rstrip().endswith("]"):
            section = line.strip("[] \n")
        elif (match := re.match(r"# ([a-z_]+) = ", line)) and section in TABLES:
            found.add(f"{section}.{match.group(1)}")
    return found


DOCUMENTED = set(flatten(EXAMPLE_DATA)) | commented_options(EXAMPLE.read_text(encoding="utf-8"))


def test_every_option_of_the_example_is_in_the_table() -> None:
    assert set(EFFECTS) == DOCUMENTED


def test_every_option_the_loader_accepts_is_in_the_example() -> None:
    assert config_fields() == set(flatten(EXAMPLE_DATA))


def write(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True)
    path = directory / "clearwall.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize("option", sorted(EFFECTS))
def test_option_has_an_effect(option: str, tmp_path: Path, store: str) -> None:
    changed, observe, context = EFFECTS[option]
    if callable(changed):
        changed = changed(tmp_path)
    if callable(context):
        context = context(tmp_path)
    # The machine's own /etc/resolv.conf is not this test's business: both runs read one
    # of ours (the resolv_conf row changes it to another).
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.98\n")
    (tmp_path / "other-resolv.conf").write_text("nameserver 192.0.2.99\n")
    ours = {
        "dns": {"upstream": {"resolv_conf": str(tmp_path / "resolv.conf")}},
        # The example's store is the checkout's var/ (relative to the example file): each
        # run here keeps its own, beside its config file.
        "store": {"url": "sqlite:///var/clearwall.db"},
    }
    base = merged(merged(EXAMPLE_DATA, ours), context)
    observed = []
    for name, data in (("as-is", base), ("changed", merged(base, nest(option, changed)))):
        path = write(tmp_path / name, data)
        observed.append(observe(load_config(path), path, store))
    assert observed[0] != observed[1], f"{option} = {changed!r} changed nothing: {observed[0]!r}"
