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
