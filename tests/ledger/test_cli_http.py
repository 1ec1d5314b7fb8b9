"""The ``clearwall ledger`` commands and the /log/ HTTP routes, end to end on a real store."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.ports import free_port

from clearwall.ledger import proofs, tiles
from clearwall.ledger.http import log_router
from clearwall.ledger.merkle import leaf_hash
from clearwall.ledger.nameproof import verify_bundle
from clearwall.ledger.signing import parse_vkey

from .conftest import World

ROOT = Path(__file__).resolve().parents[2]
CLEARWALL = ROOT / ".venv" / "bin" / "clearwall"
DOC = ROOT / "docs" / "ledger.md"


def run(world: World, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CLEARWALL_CONFIG": str(world.config_file),
        "VKEY": world.vkey,
        "TILES": str(world.config.tiles_dir),
        "DB": world.db_url.removeprefix("sqlite:///"),
        "PATH": f"{CLEARWALL.parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def doc_block(tag: str) -> str:
    """The fenced ``sh`` block of docs/ledger.md that follows the marker ``<!-- tag -->``."""
    text = DOC.read_text()
    m = re.search(rf"<!-- {tag} -->\s*```sh\n(.*?)```", text, re.S)
    assert m, f"docs/ledger.md has no block {tag}"
    return m.group(1)


def test_documented_verification_runs(world: World, tmp_path: Path) -> None:
    out = run(world, doc_block("verify-example"), tmp_path)
    assert out.returncode == 0, out.stderr
    assert world.vkey in out.stdout
    assert "ok: www.casino.example is blocked for xa (orders 1)" in out.stdout
    # The two jurisdictions' entries, then the three orders'.
    assert re.search(r"ok: 5 entries, root [0-9a-f]{64}, tiles match", out.stdout)


def test_documented_tamper_example_fails(world: World, tmp_path: Path) -> None:
    out = run(world, doc_block("tamper-example"), tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "TAMPERED: order 1: its 4 stored rules do not match the digest" in out.stderr


def test_verify_proof_rejects_wrong_key_and_garbage(world: World, tmp_path: Path) -> None:
    other = "clearwall.example/log+00000000+" + base64.b64encode(b"\x01" + b"\x02" * 32).decode()
    script = (
        "clearwall ledger prove bet.example -j xa > p.json\n"
        f"clearwall ledger verify-proof p.json --key '{other}'"
    )
    out = run(world, script, tmp_path)
    assert out.returncode == 1 and "clearwall: error:" in out.stderr
    (tmp_path / "junk.json").write_text("{not json")
    out = run(world, f"clearwall ledger verify-proof junk.json --key '{world.vkey}'", tmp_path)
    assert out.returncode == 1 and "not JSON" in out.stderr


@pytest.fixture
def client(world: World) -> TestClient:
    app = FastAPI()
    app.include_router(log_router(world.tlog))
    return TestClient(app)


def test_http_checkpoint_and_tiles(world: World, client: TestClient) -> None:
    r = client.get("/log/checkpoint")
    assert r.status_code == 200 and r.text == world.tlog.checkpoint_note()
    assert r.headers["cache-control"] == "no-cache"
    r = client.get("/log/tile/0/000.p/3")
    assert r.status_code == 200 and len(r.content) == 3 * 32
    assert "immutable" in r.headers["cache-control"]
    assert r.content[:32] == leaf_hash(world.store.log_entries(0, 1)[0].data)
    r = client.get("/log/tile/entries/000.p/3")
    assert tiles.decode_bundle(r.content, 3)[2] == world.store.log_entries(2, 3)[0].data
    for bad in ("/log/tile/0/000.p/300", "/log/tile/0/0", "/log/tile/0/001", "/log/tile/9/000"):
        assert client.get(bad).status_code == 404, bad


def test_http_rule_files_as_published(world: World, client: TestClient) -> None:
    # What a mirror adopts: the rule file of each order version, byte for byte as written.
    published = sorted((world.tlog.dir.root / "rules").iterdir())
    assert published
    for path in published:
        r = client.get(f"/log/rules/{path.name}")
        assert r.status_code == 200 and r.content == path.read_bytes(), path.name
        assert "immutable" in r.headers["cache-control"]
    for bad in ("/log/rules/1-00.txt", "/log/rules/..%2Fcheckpoint", f"/log/rules/9{path.name}"):
        assert client.get(bad).status_code == 404, bad


def test_http_proofs(world: World, client: TestClient) -> None:
    r = client.get("/log/proof/inclusion", params={"index": 1, "size": 3}).json()
    proofs.verify_inclusion(
        1,
        3,
        base64.b64decode(r["leaf_hash"]),
        [base64.b64decode(h) for h in r["proof"]],
        base64.b64decode(r["root"]),
    )
    assert leaf_hash(r["entry"].encode()) == base64.b64decode(r["leaf_hash"])
    c = client.get("/log/proof/consistency", params={"from": 1, "to": 3}).json()
    proofs.verify_consistency(
        1,
        3,
        base64.b64decode(c["from_root"]),
        base64.b64decode(c["to_root"]),
        [base64.b64decode(h) for h in c["proof"]],
    )
    assert client.get("/log/proof/inclusion", params={"index": 5}).status_code == 400
    assert client.get("/log/proof/inclusion", params={"index": 0, "size": 9}).status_code == 400
    assert client.get("/log/proof/consistency", params={"from": 6}).status_code == 400
    b = client.get("/log/proof/name/WWW.Casino.Example.", params={"jurisdiction": "xa"})
    assert b.status_code == 200
    assert verify_bundle(b.json(), parse_vkey(world.vkey))["blocked_by"] == [1]
    assert client.get("/log/proof/name/bad..name", params={"jurisdiction": "xa"}).status_code == 400
    json.dumps(b.json())


def test_http_name_proof_at_a_past_time(client: TestClient, world: World) -> None:
    """``at`` asks what the log said at another time: before the order, nothing blocks."""
    name, xa = "/log/proof/name/www.casino.example", {"jurisdiction": "xa"}
    before = client.get(name, params={**xa, "at": "2000-01-01T00:00:00"})
    assert before.status_code == 200
    assert verify_bundle(before.json(), parse_vkey(world.vkey))["blocked_by"] == []
    now = client.get(name, params={**xa, "at": dt.datetime.now(dt.UTC).isoformat()})
    assert verify_bundle(now.json(), parse_vkey(world.vkey))["blocked_by"] == [1]
    assert client.get(name, params={**xa, "at": "yesterday"}).status_code == 400


def test_remote_verification_over_real_http(world: World) -> None:
    """fetch_and_verify against a real uvicorn server on loopback, then a tampered tile."""
    import threading
    import time

    import uvicorn

    from clearwall.ledger.remote import fetch_and_verify, verified_entries

    app = FastAPI()
    app.include_router(log_router(world.tlog))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/log"
        remote = fetch_and_verify(url, parse_vkey(world.vkey))
        assert remote.problems == [] and remote.checkpoint.size == 5
        assert len(verified_entries(url, parse_vkey(world.vkey))) == 5
        tile = world.config.tiles_dir / "tile/0/000.p/5"
        data = bytearray(tile.read_bytes())
        data[0] ^= 1
        tile.write_bytes(bytes(data))
        remote = fetch_and_verify(url, parse_vkey(world.vkey))
        assert remote.problems == ["tile tile/0/000.p/5: differs from the entries"]
    finally:
        server.should_exit = True
        thread.join(10)


def test_start_recovers_entries_committed_before_a_crash(world: World) -> None:
    """A write committed while no sync ran (crash) is published when the router starts."""
    from clearwall.store import PolicyService

    PolicyService(world.store).revoke_order(2, reason="crash before the tiles were written")
    assert world.tlog.published().size == 5  # type: ignore[union-attr]
    app = FastAPI()
    app.include_router(log_router(world.tlog))
    with TestClient(app) as c:
        assert c.get("/log/checkpoint").text.split("\n")[1] == "6"
