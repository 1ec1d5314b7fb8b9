"""Reconciliation inputs from a real clearwall log: bundles verified with the ledger's code."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.ports import free_port

from clearwall.errors import ProbeError
from clearwall.ledger.signing import generate_signer
from clearwall.probe.logclient import LogProofs, load_vkey
from clearwall.probe.reconcile import name_proof_from_bundle

pytestmark = pytest.mark.timeout(120)


def cli(cwd: Path, *args: str) -> str:
    """Run ``clearwall`` in ``cwd`` (the log lives in ``cwd/var``); return stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"CLEARWALL_DB": f"sqlite:///{cwd / 'cw.db'}", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with one court order for censored.cw.test in jurisdiction xa."""
    work = tmp_path_factory.mktemp("log")
    cli(work, "init")
    cli(work, "jurisdictions", "add", "xa", "--name", "Example A")
    cli(work, "authorities", "add", "--name", "XA Court", "--kind", "court", "--jurisdiction", "xa")
    (work / "rules.txt").write_text("censored.cw.test\n", encoding="utf-8")
    cli(
        work,
        "orders",
        "add",
        "--authority",
        "1",
        "--title",
        "Order one",
        "--legal-basis",
        "Act 1",
        "--reference",
        "R-1",
        "--category",
        "court-order",
        "--action",
        "nxdomain",
        "--rules",
        str(work / "rules.txt"),
        "--effective-from",
        "2020-01-01",
    )
    vkey = cli(work, "ledger", "key").strip().splitlines()[-1]
    bundles = {
        name: json.loads(cli(work, "ledger", "prove", name, "--jurisdiction", "xa"))
        for name in ("censored.cw.test", "open.cw.test")
    }
    return {"work": work, "vkey": vkey, "bundles": bundles}


def test_block_bundle_yields_the_order(published: dict[str, Any]) -> None:
    verifier = load_vkey(published["vkey"])
    proof = name_proof_from_bundle(
        published["bundles"]["censored.cw.test"], verifier, "censored.cw.test", "xa"
    )
    assert proof.verified, proof.failure
    assert [o.id for o in proof.orders] == [1]
    assert proof.orders[0].start is not None and proof.orders[0].start.year == 2020


def test_allow_bundle_is_verified_and_empty(published: dict[str, Any]) -> None:
    verifier = load_vkey(published["vkey"])
    proof = name_proof_from_bundle(
        published["bundles"]["open.cw.test"], verifier, "open.cw.test", "xa"
    )
    assert proof.verified and proof.orders == ()


def tampered_conclusion(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["conclusion"] = {"decision": "allow", "blocked_by": [], "allowed_by": []}
    return bundle


def dropped_order(bundle: dict[str, Any]) -> dict[str, Any]:
    bundle["orders"] = []
    return bundle


@pytest.mark.parametrize("tamper", [tampered_conclusion, dropped_order])
def test_tampered_bundles_do_not_verify(published: dict[str, Any], tamper: Any) -> None:
    bundle = tamper(copy.deepcopy(published["bundles"]["censored.cw.test"]))
    proof = name_proof_from_bundle(bundle, load_vkey(published["vkey"]), "censored.cw.test", "xa")
    assert not proof.verified and proof.failure


def test_wrong_key_and_wrong_name_do_not_verify(published: dict[str, Any]) -> None:
    bundle = published["bundles"]["censored.cw.test"]
    other = generate_signer("clearwall.example/log").verifier
    assert not name_proof_from_bundle(bundle, other, "censored.cw.test", "xa").verified
    verifier = load_vkey(published["vkey"])
    open_bundle = published["bundles"]["open.cw.test"]
    # A valid proof about another name must not stand in for the one asked about.
    assert not name_proof_from_bundle(open_bundle, verifier, "censored.cw.test", "xa").verified
    assert not name_proof_from_bundle(bundle, verifier, "censored.cw.test", "xb").verified


def test_bad_key_text() -> None:
    with pytest.raises(ProbeError):
        load_vkey("not a key")


def test_log_client_against_ledger_serve(published: dict[str, Any]) -> None:
    port = free_port()
    work = published["work"]
    server = subprocess.Popen(
        [sys.executable, "-m", "clearwall", "ledger", "serve", "--web", f"127.0.0.1:{port}"],
        cwd=work,
        env={"CLEARWALL_DB": f"sqlite:///{work / 'cw.db'}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.2)

        async def go() -> None:
            client = LogProofs(
                f"http://127.0.0.1:{port}/log", load_vkey(published["vkey"]), "XA", timeout=5
            )
            await client.check()
            proof = await client.prove("censored.cw.test")
            assert proof.verified and [o.id for o in proof.orders] == [1], proof.failure
            wrong = LogProofs(
                f"http://127.0.0.1:{port}",
                generate_signer("clearwall.example/log").verifier,
                "xa",
                timeout=5,
            )
            with pytest.raises(ProbeError, match="does not verify"):
                await wrong.check()
            await client.aclose()
            await wrong.aclose()

        asyncio.run(go())
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_unreachable_log_is_a_clear_error() -> None:
    port = free_port()
    client = LogProofs(
        f"http://127.0.0.1:{port}", generate_signer("x.example/log").verifier, "xa", timeout=1
    )
    with pytest.raises(ProbeError, match="unreachable"):
        await client.check()
    proof = await client.prove("a.example")
    assert not proof.verified and proof.failure
    await client.aclose()
