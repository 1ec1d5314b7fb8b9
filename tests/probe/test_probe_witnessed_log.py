"""The probe's log client enforces a witness policy on every checkpoint it is given."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.ports import free_port

from clearwall.errors import ProbeError
from clearwall.ledger.cosignature import generate_cosigner, policy_from_args
from clearwall.probe.logclient import LogProofs, load_vkey
from witness.processes import WitnessProcess

pytestmark = pytest.mark.timeout(180)


def cli(cwd: Path, *args: str) -> str:
    """Run ``clearwall`` with the config in ``cwd``; return stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["CLEARWALL_CONFIG"] = str(cwd / "clearwall.toml")
    result = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_probe_requires_the_quorum(tmp_path: Path) -> None:
    ws = [WitnessProcess(tmp_path / f"w{i}", f"w{i}.example/witness") for i in (1, 2)]
    work = tmp_path / "log"
    work.mkdir()
    table = ", ".join(f'{{ url = "{w.url}", vkey = "{w.vkey}" }}' for w in ws)
    (work / "clearwall.toml").write_text(
        f'[store]\nurl = "sqlite:///{work / "cw.db"}"\n'
        f"[ledger]\nwitnesses = [{table}]\nwitness_quorum = 2\n"
    )
    cli(work, "init")
    vkey = cli(work, "ledger", "key").strip()
    port = free_port()
    server = None
    try:
        for w in ws:
            w.add_log("clearwall.example/log", vkey)
            w.start()
        cli(work, "jurisdictions", "add", "xa", "--name", "Example A")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
        env["CLEARWALL_CONFIG"] = str(work / "clearwall.toml")
        server = subprocess.Popen(
            [sys.executable, "-m", "clearwall", "ledger", "serve", "--web", f"127.0.0.1:{port}"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        stranger = generate_cosigner("w3.example/witness", b"\x03" * 32).verifier.vkey

        async def go() -> None:
            keys = [w.vkey for w in ws]
            for witnesses, quorum, error in [
                (keys, 2, None),
                ([*keys, stranger], 2, None),
                ([*keys, stranger], 3, "w3.example/witness+"),
            ]:
                policy, urls = policy_from_args(witnesses, quorum)
                client = LogProofs(
                    f"http://127.0.0.1:{port}/log",
                    load_vkey(vkey),
                    "xa",
                    timeout=5,
                    policy=policy,
                    witness_urls=urls,
                )
                try:
                    if error is None:
                        await client.check()
                        proof = await client.prove("open.cw.test")
                        assert proof.verified, proof.failure
                    else:
                        with pytest.raises(ProbeError, match="3 required") as info:
                            await client.check()
                        assert error in str(info.value) and "no cosignature" in str(info.value)
                        proof = await client.prove("open.cw.test")
                        assert not proof.verified and "3 required" in (proof.failure or "")
                finally:
                    await client.aclose()

        asyncio.run(go())
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        for w in ws:
            w.stop()
