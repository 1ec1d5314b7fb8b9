"""Three ``clearwall serve`` nodes on one PostgreSQL store, as on three hosts: separate
working, snapshot and log directories, one of them holding the ledger key. A writer on
each (the CLI on the signer and on a node without the key, the API on the third); every
node enforces every order, and serves the same checkpoint and tiles byte for byte."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from tests.ports import free_port

from clearwall.ledger import tiles
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.signing import load_signer, parse_vkey

pytestmark = pytest.mark.timeout(600)
ORIGIN = "clearwall.example/log"
WAIT = 60.0  # generous: a shared 2-core machine; bench/fleet.py measures the real figure


@dataclass
class Node:
    """One gateway: its directory (working directory, config, log, snapshots) and ports."""

    home: Path
    dns_port: int
    web_port: int
    proc: subprocess.Popen[str] | None = None

    @property
    def config(self) -> Path:
        return self.home / "cw.toml"

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def cli(self, *args: str) -> str:
        """Run a clearwall command here, with this node's config; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "clearwall", *args, "--config", str(self.config)],
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def rcode(self, name: str) -> int | None:
        """The rcode this node answers for ``name`` (None: no answer yet)."""
        try:
            query = dns.message.make_query(name, "A")
            return dns.query.udp(query, "127.0.0.1", timeout=1, port=self.dns_port).rcode()
        except (dns.exception.Timeout, OSError):
            return None


def _config(pg_url: str, node: Path, vkey: str) -> str:
    lines = [
        "[store]",
        f'url = "{pg_url}"',
        "[ledger]",
        f'key_file = "{node / "ledger.key"}"',
        f'tiles_dir = "{node / "log"}"',
        f'origin = "{ORIGIN}"',
    ]
    if vkey:
        lines.append(f'vkey = "{vkey}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    """Three running nodes; the first holds the ledger key, made by ``clearwall init``."""
    nodes = [Node(tmp_path / f"node{i}", free_port(), free_port()) for i in range(3)]
    for node in nodes:
        node.home.mkdir()
    signer = nodes[0]
    signer.config.write_text(_config(pg_url, signer.home, ""))
    signer.cli("init")
    vkey = load_signer(signer.home / "ledger.key").verifier.vkey
    for node in nodes:
        node.config.write_text(_config(pg_url, node.home, vkey))
    signer.cli("jurisdictions", "add", "xa", "--name", "A", "--network", "127.0.0.0/8")
    signer.cli("authorities", "add", "--name", "Court A", "--kind", "court", "--jurisdiction", "xa")
    try:
        for node in nodes:
            node.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "clearwall", "serve", "--config", str(node.config)),
                    *("--dns", f"127.0.0.1:{node.dns_port}", "--web", f"127.0.0.1:{node.web_port}"),
                    *("--upstream", "127.0.0.1:9"),
                ],
                cwd=node.home,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + WAIT
        for node in nodes:  # any answer (SERVFAIL: no upstream) means it serves
            while node.rcode("x.test") is None:
                assert node.proc is not None and node.proc.poll() is None, "a node died"
                assert time.monotonic() < deadline, "a node did not start"
            while True:
                try:
                    httpx.get(f"{node.web}/log/checkpoint", timeout=2)
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline, "a node's web app did not start"
                    time.sleep(0.2)
        yield nodes
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            if node.proc is not None:
                try:
                    out, _ = node.proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    out, _ = node.proc.communicate()
                print(f"--- {node.home.name}:\n{out}")  # shown when the test fails


def _add_cli(node: Node, reference: str, name: str) -> None:
    rules = node.home / f"{reference}.txt"
    rules.write_text(f"{name}\n")
    node.cli(
        *("orders", "add", "--authority", "1", "--title", "Order", "--legal-basis", "Act s.1"),
        *("--reference", reference, "--category", "court-order", "--action", "nxdomain"),
        *("--rules", str(rules)),
    )


def _add_api(node: Node, reference: str, name: str) -> None:
    token = node.cli("tokens", "create", "--role", "operator", "--label", "test").split()[-1]
    body = {
        "authority": 1,
        "title": "Order",
        "legal_basis": "Act s.1",
        "reference": reference,
        "category": "court-order",
        "action": "nxdomain",
        "rules": f"{name}\n",
        "format": "domains",
    }
    reply = httpx.post(
        f"{node.web}/api/v1/orders",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert reply.status_code == 201, reply.text


def test_every_node_enforces_every_writer_and_serves_the_same_log(
    cluster: list[Node],
) -> None:
    signer, follower, api_node = cluster
    writes = [
        (signer, _add_cli, "S1", "signer.example"),
        (follower, _add_cli, "F1", "follower.example"),
        (api_node, _add_api, "A1", "api.example"),
    ]
    for node, write, reference, name in writes:
        write(node, reference, name)
        deadline = time.monotonic() + WAIT
        for each in cluster:
            while each.rcode(name) != dns.rcode.NXDOMAIN:
                assert time.monotonic() < deadline, f"{each.home.name} does not enforce {name}"
                time.sleep(0.05)

    # The log: xa's entry and the three orders.
    size = 4
    deadline = time.monotonic() + WAIT
    while True:
        notes = [httpx.get(f"{n.web}/log/checkpoint", timeout=5).text for n in cluster]
        if len(set(notes)) == 1 and f"\n{size}\n" in notes[0]:
            break
        assert time.monotonic() < deadline, notes
        time.sleep(0.1)
    vkey = load_signer(signer.home / "ledger.key").verifier.vkey
    checkpoint = open_checkpoint(notes[0], parse_vkey(vkey), ORIGIN)
    assert checkpoint.size == size
    assert notes[0].count("\n\u2014 ") == 1  # one signature: the signer's
    for tile in [*tiles.new_tiles(0, size), *tiles.new_bundles(0, size)]:
        bodies = {httpx.get(f"{n.web}/log/{tile.path}", timeout=5).content for n in cluster}
        assert len(bodies) == 1 and b"" not in bodies, tile.path
    for node in cluster[1:]:
        assert not (node.home / "ledger.key").exists()  # only the signer ever held a key
    for node in cluster:
        metrics = httpx.get(f"{node.web}/metrics", timeout=5).text
        assert "clearwall_store_reachable 1.0" in metrics
    for node in cluster:
        assert node.cli("ledger", "verify").startswith("ok")
        assert (
            json.loads(node.cli("check", "api.example", "--client", "127.0.0.1", "--json"))[
                "decision"
            ]
            == "block"
        )


def test_the_configs_in_docs_cluster_md_load_as_the_page_says(tmp_path: Path) -> None:
    """docs/cluster.md's two configs: node A signs (it holds the key), node B does not."""
    import re

    from clearwall.config import load_config

    page = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", page, re.S)
    assert len(blocks) == 2
    configs = []
    for i, block in enumerate(blocks):
        path = tmp_path / f"{i}.toml"
        # The same files, in a directory this test owns.
        path.write_text(block.replace("/var/lib/clearwall/", f"{tmp_path}/n{i}/"))
        configs.append(load_config(path).ledger)
    a, b = configs
    a.key_path().parent.mkdir(parents=True)
    a.key_path().write_text("")  # node A holds a key file
    assert a.signs() and not a.vkey
    assert not b.key_path().exists() and not b.signs()
