"""The systemd units in deploy/: verified by systemd itself, with the hardening we promise."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clearwall.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _settings(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _installed(unit: Path, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's clearwall (verify checks it)."""
    exe = Path(sys.executable).parent / "clearwall"
    text = unit.read_text().replace("/opt/clearwall/venv/bin/clearwall", str(exe))
    out = tmp_path / unit.name
    out.write_text(text)
    return out


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit_without_a_warning(unit: Path, tmp_path: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", str(_installed(unit, tmp_path))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(_installed(unit, tmp_path))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= 2.5, done.stdout


def test_the_gateway_unit_has_the_promised_hardening() -> None:
    s = _settings(DEPLOY / "systemd" / "clearwall.service")
    assert s["User"] == ["clearwall"] and s["Group"] == ["clearwall"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] == ["clearwall"]  # /var/lib/clearwall
    assert s["ReadWritePaths"] == ["/var/lib/clearwall"]
    assert s["ConfigurationDirectory"] == ["clearwall"]  # /etc/clearwall
    assert "--config /etc/clearwall/clearwall.toml" in s["ExecStart"][0]


def test_the_deploy_config_writes_only_under_the_state_directory() -> None:
    config = load_config(DEPLOY / "clearwall.toml")
    state = Path("/var/lib/clearwall")
    written = [
        Path(config.store.url.removeprefix("sqlite:///")),
        config.ledger.key_file,
        config.ledger.tiles_dir,
        config.logging.query_log_dir,
    ]
    for path in written:
        assert path.is_absolute() and state in path.parents, path
    assert all(hp.port == 53 for hp in config.dns.listen)
