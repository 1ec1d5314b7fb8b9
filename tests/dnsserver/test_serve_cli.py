"""``clearwall serve`` start-up errors are one-line messages with exit status 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearwall", "serve", "--web", "off", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    result = _serve("--dns", "127.0.0.1:0", "--db", f"sqlite:///{tmp_path}/none/x.db", cwd=tmp_path)
    assert result.returncode == 1
    assert "clearwall: error: no clearwall store" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    from clearwall.policy.snapshot import PolicySnapshot

    snap = tmp_path / "empty.snap"
    PolicySnapshot.compile([], [], tree_size=0, base_url="").save(snap)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = _serve("--dns", f"127.0.0.1:{port}", "--snapshot", str(snap), cwd=tmp_path)
    assert result.returncode == 1
    assert f"clearwall: error: [dns] listen 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )


def test_bad_listen_flag(tmp_path: Path) -> None:
    result = _serve("--dns", "127.0.0.1:99999", cwd=tmp_path)
    assert result.returncode == 1 and "[dns] listen: port out of range" in result.stderr


def test_snapshots_live_beside_the_store_and_go_with_the_gateway(tmp_path: Path) -> None:
    import signal
    import time

    import dns.message
    import dns.query

    store = tmp_path / "store"
    store.mkdir()
    db = f"sqlite:///{store / 'cw.db'}"
    subprocess.run(  # init writes the ledger key and tiles beside the store
        [sys.executable, "-m", "clearwall", "init", "--db", db],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    argv = ["serve", "--web", "off", "--db", db, "--dns", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearwall", *argv, "--upstream", "127.0.0.1:9"],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # any reply (SERVFAIL: no upstream) means the gateway is serving
            try:
                dns.query.udp(
                    dns.message.make_query("x.test", "A"), "127.0.0.1", timeout=0.5, port=port
                )
                break
            except (dns.exception.Timeout, OSError):
                assert time.monotonic() < deadline and proc.poll() is None, "not serving"
        running = sorted(p.name for p in (store / "snapshots").iterdir())
        assert running and all(name.startswith("policy-") for name in running)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert list((store / "snapshots").iterdir()) == []  # removed on a clean stop
    assert not (elsewhere / "var").exists()  # nothing written relative to the cwd
