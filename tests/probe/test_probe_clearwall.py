"""End to end with clearwall itself: the gateway in the censored network, its log outside.

The operator runs a real ``clearwall serve`` behind the middlebox, but from a store that
has drifted from the log it publishes: the published log has an order the gateway never
got (``notenforced``), and the gateway has an order the public never saw (``secret``,
answered with EDE 16 and a well-formed SDE naming it). On top, the middlebox forges,
resets, drops and rewrites traffic that no log mentions, and answers ``dishonest`` itself
with EDE 16 and an SDE naming an order that does not exist. The probe, trusting only
proofs verified with the log's key, must give every target its reconciliation verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netbox import AUTH_DNS_IP, CTL_IP, MID_CLI_IP, PYTHON, NetBox, can_build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZONE = {
    "ok.cw.test": "198.18.0.10",
    "forged.cw.test": "198.18.0.12",
    "reset.cw.test": "198.18.0.13",
    "blockpage.cw.test": "198.18.0.14",
    "tlsdrop.cw.test": "198.18.0.15",
    "censored.cw.test": "198.18.0.16",
    "notenforced.cw.test": "198.18.0.17",
    "secret.cw.test": "198.18.0.18",
    "dishonest.cw.test": "198.18.0.19",
}
EXPECTED = {
    "https://ok.cw.test/": ("accessible", "consistent-allow"),
    "http://forged.cw.test/": ("dns-tampering", "enforced-but-unpublished"),
    "https://reset.cw.test/": ("tcp-blocking", "enforced-but-unpublished"),
    "http://blockpage.cw.test/": ("http-blockpage", "enforced-but-unpublished"),
    "https://tlsdrop.cw.test/": ("tls-interference", "enforced-but-unpublished"),
    "https://censored.cw.test/": ("dns-transparent-block", "published-and-enforced"),
    "https://notenforced.cw.test/": ("accessible", "published-but-not-enforced"),
    "https://secret.cw.test/": ("dns-transparent-block", "enforced-but-unpublished"),
    "https://dishonest.cw.test/": ("dns-transparent-block", "enforced-but-unpublished"),
}


def cli(cwd: Path, *args: str) -> str:
    """Run ``clearwall`` with its store and log in ``cwd``."""
    env = {**os.environ, "CLEARWALL_DB": f"sqlite:///{cwd / 'cw.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def add_order(cwd: Path, name: str, title: str) -> None:
    rules = cwd / f"{title}.txt"
    rules.write_text(name + "\n", encoding="utf-8")
    cli(
        cwd, "orders", "add", "--authority", "1", "--title", title, "--legal-basis", "Act 1",
        "--reference", title, "--category", "court-order", "--action", "nxdomain",
        "--rules", str(rules), "--effective-from", "2020-01-01",
    )  # fmt: skip


def stores(tmp: Path) -> tuple[Path, Path, str]:
    """The published store and the gateway's drifted copy; returns both and the vkey."""
    base = tmp / "base"
    base.mkdir()
    cli(base, "init")
    cli(base, "jurisdictions", "add", "xa", "--name", "Example A", "--network", "127.0.0.0/8",
        "--network", "100.64.1.0/24")  # fmt: skip
    cli(base, "authorities", "add", "--name", "XA Court", "--kind", "court", "--jurisdiction", "xa")
    add_order(base, "censored.cw.test", "enforced")
    published, gateway = tmp / "published", tmp / "gateway"
    shutil.copytree(base, published)
    shutil.copytree(base, gateway)
    add_order(published, "notenforced.cw.test", "published-only")
    add_order(gateway, "secret.cw.test", "secret")
    vkey = cli(published, "ledger", "key").strip().splitlines()[-1]
    return published, gateway, vkey


@pytest.fixture
def network(tmp_path: Path) -> Any:
    reason = can_build()
    if reason:
        pytest.skip(reason)
    published, gateway, vkey = stores(tmp_path)
    env = ["env", f"CLEARWALL_DB=sqlite:///{gateway / 'cw.db'}"]
    with NetBox(tmp_path, ZONE) as box:
        box.start(
            "mid",
            [*env, PYTHON, "-m", "clearwall", "serve", "--dns", "127.0.0.1:5300", "--web", "off",
             "--upstream", f"{AUTH_DNS_IP}:53", "--snapshot-dir", str(gateway / "snapshots")],
            ready="",
            wait=1,
            stream="none",
            cwd=gateway,
        )  # fmt: skip
        box.wait_port("mid", "127.0.0.1", 5300, wait=30)
        sde = {"c": ["mailto:court@xa.example"], "j": "order 999 of the XA court", "o": "XA court"}
        box.middle(
            forge={"forged.cw.test": "198.19.255.1"},
            blocks={"dishonest.cw.test": {"ede": 16, "sde": sde}},
            upstream="127.0.0.1:5300",
        )
        box.interfere(
            reset=[ZONE["reset.cw.test"]],
            tls_drop=[ZONE["tlsdrop.cw.test"]],
            blockpage=[ZONE["blockpage.cw.test"]],
        )
        box.start(
            "ctl",
            ["env", f"CLEARWALL_DB=sqlite:///{published / 'cw.db'}", PYTHON, "-m", "clearwall",
             "ledger", "serve", "--web", f"{CTL_IP}:8080"],
            ready="",
            wait=1,
            stream="none",
            cwd=published,
        )  # fmt: skip
        box.wait_port("ctl", CTL_IP, 8080, wait=30)
        box.start(
            "ctl",
            [PYTHON, "-m", "clearwall", "probe-helper", "--allow-private",
             "--listen", f"{CTL_IP}:8090",
             "--resolver", AUTH_DNS_IP, "--ca-file", str(box.ca_file), "--timeout", "2"],
            ready="listening",
            stream="stderr",
        )  # fmt: skip
        yield box, vkey


def test_every_reconciliation_verdict(network: tuple[NetBox, str], tmp_path: Path) -> None:
    box, vkey = network
    listing = tmp_path / "targets.txt"
    listing.write_text("\n".join(EXPECTED) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    result = box.run(
        "cli",
        [PYTHON, "-m", "clearwall", "probe", str(listing), "--resolver", MID_CLI_IP,
         "--control", f"tcp://{AUTH_DNS_IP}", "--control-helper", f"http://{CTL_IP}:8090",
         "--log", f"http://{CTL_IP}:8080", "--key", vkey, "--jurisdiction", "xa",
         "--propagation-delay", "60", "--ca-file", str(box.ca_file), "--timeout", "2",
         "--out", str(out), "--html", str(tmp_path / "report.html"), "--no-progress"],
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = {r["input"]: r for r in map(json.loads, out.read_text().splitlines())}
    got = {
        url: (r["clearwall"]["classification"], r["clearwall"]["reconciliation"]["verdict"])
        for url, r in records.items()
    }
    detail = {u: records[u]["clearwall"] for u in records if got[u] != EXPECTED.get(u)}
    assert got == EXPECTED, json.dumps(detail, indent=1)
    secret = records["https://secret.cw.test/"]
    # The gateway's answer is a well-formed transparent block naming its (unpublished) order.
    assert secret["test_keys"]["queries"][0]["ede"][0]["info_code"] == 16
    assert secret["clearwall"]["proof"]["verified"] is True
    assert secret["clearwall"]["proof"]["orders"] == []
    assert any("cites order 2" in e for e in secret["clearwall"]["reconciliation"]["evidence"])
    dishonest = records["https://dishonest.cw.test/"]["clearwall"]
    assert any("claim" in e for e in dishonest["reconciliation"]["evidence"])
    assert records["https://censored.cw.test/"]["clearwall"]["reconciliation"]["orders"] == [1]
    assert records["https://notenforced.cw.test/"]["clearwall"]["reconciliation"]["orders"] == [2]
