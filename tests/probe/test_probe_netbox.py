"""End to end: the probe, run in a censored network in a box, classifies every target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from netbox import AUTH_DNS_IP, CTL_IP, MID_CLI_IP, PYTHON, NetBox, can_build

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ZONE = {
    "ok.cw.test": "198.18.0.10",
    "plain.cw.test": "198.18.0.11",
    "forged.cw.test": "198.18.0.12",
    "reset.cw.test": "198.18.0.13",
    "blockpage.cw.test": "198.18.0.14",
    "tlsdrop.cw.test": "198.18.0.15",
    "censored.cw.test": "198.18.0.16",
    "legal.cw.test": "198.18.0.17",
    "down.cw.test": "198.19.254.1",
}
TARGETS = {
    "https://ok.cw.test/": "accessible",
    "http://plain.cw.test/": "accessible",
    "http://forged.cw.test/": "dns-tampering",
    "https://reset.cw.test/": "tcp-blocking",
    "http://blockpage.cw.test/": "http-blockpage",
    "https://tlsdrop.cw.test/": "tls-interference",
    "https://censored.cw.test/": "dns-transparent-block",
    "http://legal.cw.test/": "http-451",
    "https://down.cw.test/": "down",
    "https://missing.cw.test/": "down",
}


def probe(box: NetBox, workdir: Path, *extra: str) -> dict[str, dict[str, Any]]:
    listing = workdir / "targets.txt"
    listing.write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    out = workdir / "results.jsonl"
    result = box.run(
        "cli",
        [
            PYTHON,
            "-m",
            "clearwall",
            "probe",
            str(listing),
            "--resolver",
            MID_CLI_IP,
            "--control",
            f"tcp://{AUTH_DNS_IP}",
            "--ca-file",
            str(box.ca_file),
            "--timeout",
            "2",
            "--out",
            str(out),
            "--html",
            str(workdir / "report.html"),
            "--no-progress",
            *extra,
        ],
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["input"]: r for r in records}


@pytest.fixture
def censored(tmp_path: Path) -> Any:
    reason = can_build()
    if reason:
        pytest.skip(reason)
    with NetBox(tmp_path, ZONE) as box:
        box.middle(
            forge={"forged.cw.test": "198.19.255.1"},
            blocks={
                "censored.cw.test": {"ede": 16, "sde": {"j": "court order 1", "o": "XA court"}}
            },
            upstream=f"{AUTH_DNS_IP}:53",
        )
        box.interfere(
            reset=[ZONE["reset.cw.test"]],
            tls_drop=[ZONE["tlsdrop.cw.test"]],
            blockpage=[ZONE["blockpage.cw.test"]],
            legal=(ZONE["legal.cw.test"],),
        )
        box.start(
            "ctl",
            [
                PYTHON,
                "-m",
                "clearwall",
                "probe-helper",
                "--allow-private",
                "--listen",
                f"{CTL_IP}:8090",
                "--resolver",
                AUTH_DNS_IP,
                "--ca-file",
                str(box.ca_file),
                "--timeout",
                "2",
            ],
            ready="listening",
            stream="stderr",
        )
        yield box


def test_every_target_is_classified(censored: NetBox, tmp_path: Path) -> None:
    results = probe(censored, tmp_path, "--control-helper", f"http://{CTL_IP}:8090")
    got = {url: r["clearwall"]["classification"] for url, r in results.items()}
    assert got == TARGETS, json.dumps(
        {u: results[u]["clearwall"]["evidence"] for u in got}, indent=1
    )
    censored_record = results["https://censored.cw.test/"]
    assert censored_record["test_keys"]["queries"][0]["ede"][0]["info_code"] == 16
    assert censored_record["test_keys"]["queries"][0]["sde"] == {
        "j": "court order 1",
        "o": "XA court",
    }
    assert results["https://reset.cw.test/"]["test_keys"]["blocking"] == "tcp_ip"
    legal = results["http://legal.cw.test/"]["test_keys"]["requests"][0]
    assert legal["blocked_by"] == "https://blocker.example/orders/77"
    assert "<svg" in (tmp_path / "report.html").read_text()


def test_without_helper_outages_and_blocking_are_not_separated(
    censored: NetBox, tmp_path: Path
) -> None:
    results = probe(censored, tmp_path)
    reset = results["https://reset.cw.test/"]["clearwall"]
    assert reset["classification"] == "undetermined"
    assert set(reset["candidates"]) == {"tcp-blocking", "down"}
    assert (
        results["https://censored.cw.test/"]["clearwall"]["classification"]
        == "dns-transparent-block"
    )
    assert results["http://forged.cw.test/"]["clearwall"]["classification"] == "dns-tampering"
