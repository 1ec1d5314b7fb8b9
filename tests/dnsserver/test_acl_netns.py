"""A jurisdiction's own clients, in a real network namespace, are served by ``clearwall serve``.

One namespace joined to the root namespace by a veth pair: the gateway listens on the
root end, the client sits in the namespace with three addresses (one in the
jurisdiction's network, one in a network added while the gateway runs, one in none),
and asks with dnspython bound to each. The upstream is a real nsd on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ports import free_port

from dnsserver.upstreams import NSD

pytestmark = pytest.mark.timeout(180)

ASK = """
import json, sys
import dns.message, dns.query
source, server, port, name = sys.argv[1:5]
query = dns.message.make_query(name, "A", use_edns=0)
reply = dns.query.udp(query, server, port=int(port), source=source, timeout=2)
print(json.dumps({
    "rcode": dns.rcode.to_text(reply.rcode()),
    "ede": [o.code for o in reply.options if o.otype == 15],
    "a": sorted(r.to_text() for rrset in reply.answer for r in rrset),
}))
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one command, bounded in time."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def can_build() -> str | None:
    """None when a namespace can be built here, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 not installed (scripts/install-system-deps.sh)"
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 under 10.177.0.0/16 that no interface here uses (other engineers' tests may
    hold some), picked from our pid so parallel runs start apart."""
    used = sh("ip", "-4", "-o", "addr", "show").stdout
    for step in range(256):
        third = (os.getpid() + step) % 256
        if f" 10.177.{third}." not in used:
            return ipaddress.IPv4Network(f"10.177.{third}.0/24")
    raise RuntimeError("no free 10.177.x.0/24")


class Namespace:
    """One namespace and a veth pair to the root namespace, removed on exit."""

    def __init__(self, subnet: ipaddress.IPv4Network, clients: list[str]) -> None:
        tag = f"cwop{os.getpid() % 100000}"
        self.name = f"cw-h-operator-{os.getpid()}"
        self.root_if, self.ns_if = f"{tag}r"[-15:], f"{tag}n"[-15:]
        self.gateway = str(subnet.network_address + 1)
        self.prefix = subnet.prefixlen
        self.clients = clients

    def __enter__(self) -> Namespace:
        try:
            sh("ip", "netns", "add", self.name)
            sh("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.ns_if)
            sh("ip", "link", "set", self.ns_if, "netns", self.name)
            sh("ip", "addr", "add", f"{self.gateway}/{self.prefix}", "dev", self.root_if)
            sh("ip", "link", "set", self.root_if, "up")
            for address in self.clients:
                self.run("ip", "addr", "add", f"{address}/{self.prefix}", "dev", self.ns_if)
            self.run("ip", "link", "set", self.ns_if, "up")
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return sh("ip", "netns", "exec", self.name, *argv)

    def ask(self, source: str, port: int, name: str) -> dict[str, object]:
        """Ask the gateway for ``name`` from ``source``: rcode, EDE codes, addresses."""
        out = self.run(sys.executable, "-c", ASK, source, self.gateway, str(port), name)
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Kill anything left inside, then delete the namespace (its veth end goes with it,
        and so does the root end)."""
        pids = sh("ip", "netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "link", "del", self.root_if, check=False)


@pytest.fixture
def netns() -> Iterator[tuple[Namespace, dict[str, str]]]:
    """The namespace and the networks: xa's (at start), xb's (added later), and none."""
    reason = can_build()
    if reason is not None:
        pytest.skip(reason)
    subnet = free_subnet()
    xa, xb, outside = list(subnet.subnets(new_prefix=26))[:3]
    clients = {
        "xa": str(xa.network_address + 2),
        "xb": str(xb.network_address + 2),
        "outside": str(outside.network_address + 2),
        "xa_net": str(xa),
        "xb_net": str(xb),
    }
    with Namespace(subnet, [clients["xa"], clients["xb"], clients["outside"]]) as ns:
        yield ns, clients


def clearwall(*argv: str, cwd: Path) -> str:
    """Run one ``clearwall`` command as an operator would; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    done = subprocess.run(
        [sys.executable, "-m", "clearwall", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_jurisdiction_clients_are_served_and_new_networks_without_restart(
    netns: tuple[Namespace, dict[str, str]], nsd: NSD, tmp_path: Path
) -> None:
    ns, net = netns
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    clearwall("init", "--db", db, cwd=tmp_path)
    clearwall(
        "jurisdictions",
        "add",
        "xa",
        "--name",
        "A",
        "--network",
        net["xa_net"],
        "--db",
        db,
        cwd=tmp_path,
    )
    court = clearwall(
        "authorities",
        "add",
        "--name",
        "Court",
        "--kind",
        "court",
        "--jurisdiction",
        "xa",
        "--db",
        db,
        cwd=tmp_path,
    ).strip()
    rules = tmp_path / "court.txt"
    rules.write_text("blocked.example.test\n")
    clearwall(
        "orders",
        "add",
        "--authority",
        court,
        "--title",
        "T",
        "--legal-basis",
        "L",
        "--reference",
        "R-1",
        "--category",
        "court-order",
        "--action",
        "nxdomain",
        "--rules",
        str(rules),
        "--db",
        db,
        cwd=tmp_path,
    )
    port = free_port(ns.gateway)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearwall",
            "serve",
            "--web",
            "off",
            "--db",
            db,
            "--dns",
            f"{ns.gateway}:{port}",
            "--upstream",
            f"127.0.0.1:{nsd.port}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the gateway answers loopback-free clients once it is up
            try:
                first = ns.ask(net["xa"], port, "www.example.test")
                break
            except (subprocess.CalledProcessError, json.JSONDecodeError):
                assert time.monotonic() < deadline and gateway.poll() is None, "not serving"
                time.sleep(0.3)
        # A client of xa is served, with xa's orders applied.
        assert first == {"rcode": "NOERROR", "ede": [], "a": ["192.0.2.1"]}
        blocked = ns.ask(net["xa"], port, "blocked.example.test")
        assert (blocked["rcode"], blocked["ede"]) == ("NXDOMAIN", [16])
        # Clients in no jurisdiction's network (nor allow_networks) stay refused.
        for who in ("xb", "outside"):
            refused = ns.ask(net[who], port, "www.example.test")
            assert (refused["rcode"], refused["ede"]) == ("REFUSED", [18]), who
        # A jurisdiction added while the gateway runs: its clients are served without a
        # restart, within a few seconds (the log entry makes the policy version change).
        clearwall(
            "jurisdictions",
            "add",
            "xb",
            "--name",
            "B",
            "--network",
            net["xb_net"],
            "--db",
            db,
            cwd=tmp_path,
        )
        added = time.monotonic()
        while ns.ask(net["xb"], port, "www.example.test")["rcode"] == "REFUSED":
            assert time.monotonic() - added < 15, "the new network is still refused"
            time.sleep(0.2)
        print(f"new jurisdiction served after {time.monotonic() - added:.2f}s")
        assert ns.ask(net["xb"], port, "blocked.example.test")["rcode"] == "NOERROR"  # not xa's
        refused = ns.ask(net["outside"], port, "www.example.test")
        assert (refused["rcode"], refused["ede"]) == ("REFUSED", [18])
        # And a network taken away stops being served, as promptly.
        clearwall(
            "jurisdictions",
            "update",
            "xa",
            "--remove-network",
            net["xa_net"],
            "--db",
            db,
            cwd=tmp_path,
        )
        removed = time.monotonic()
        while ns.ask(net["xa"], port, "www.example.test")["rcode"] != "REFUSED":
            assert time.monotonic() - removed < 15, "the removed network is still served"
            time.sleep(0.2)
        assert gateway.poll() is None
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            out, _ = gateway.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            gateway.kill()
            out, _ = gateway.communicate()
    assert gateway.returncode == 0, out
