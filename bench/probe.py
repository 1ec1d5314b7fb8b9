"""Benchmark: probe the 1,722-line Citizen Lab global list in the network in a box.

Every URL of the list keeps its real host name, resolved by the box's authoritative
server to one of 200 local web-server addresses (sites are told apart by Host/SNI, one
certificate from a throw-away CA covers them all). The middlebox interferes with a
deterministic 4 % of the names (forged answers, TCP resets, blockpages, dropped TLS
handshakes, EDE blocks), so every code path is timed, not only the fast one. The probe
runs with its default concurrency and timeouts, the test helper and a control resolver.

    sudo .venv/bin/python bench/probe.py [--list PATH] [--output bench/results/probe-latest.json]

Prints the wall-clock time and the classification counts; target: at most 10 minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "probe"))
sys.path.insert(0, str(ROOT / "src"))

from netbox import AUTH_DNS_IP, CTL_IP, MID_CLI_IP, PYTHON, NetBox, can_build  # noqa: E402

from clearwall.probe.inputs import load_targets  # noqa: E402

DEFAULT_LIST = ROOT.parent / "shared" / "data" / "citizenlab" / "global.csv"


def main() -> int:
    """Build the box, run the probe over the list, report the time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "probe-latest.json"
    )
    args = parser.parse_args()
    reason = can_build()
    if reason:
        print(f"cannot build the network in a box: {reason}", file=sys.stderr)
        return 2
    targets, problems = load_targets(args.list)
    names = sorted({t.name for t in targets})
    zone = {name: f"198.18.{1 + i % 200 // 100}.{10 + i % 100}" for i, name in enumerate(names)}
    interfered = names[::25]
    kinds = ("forge", "reset", "blockpage", "tlsdrop", "block")
    plan: dict[str, list[str]] = {k: [] for k in kinds}
    for i, name in enumerate(interfered):
        plan[kinds[i % len(kinds)]].append(name)
    # Interference by address: give those names addresses of their own.
    for j, name in enumerate(plan["reset"] + plan["blockpage"] + plan["tlsdrop"]):
        zone[name] = f"198.18.5.{10 + j}"
    with tempfile.TemporaryDirectory(prefix="cw-probe-bench-") as tmp:
        work = Path(tmp)
        setup = time.monotonic()
        with NetBox(work, zone) as box:
            box.middle(
                forge={n: "198.19.255.1" for n in plan["forge"]},
                blocks={n: {"ede": 16, "sde": {"j": "bench order"}} for n in plan["block"]},
                upstream=f"{AUTH_DNS_IP}:53",
            )
            box.interfere(
                reset=[zone[n] for n in plan["reset"]],
                tls_drop=[zone[n] for n in plan["tlsdrop"]],
                blockpage=[zone[n] for n in plan["blockpage"]],
            )
            box.start(
                "ctl",
                [
                    PYTHON,
                    "-m",
                    "clearwall",
                    "probe-helper",
                    "--listen",
                    f"{CTL_IP}:8090",
                    "--resolver",
                    AUTH_DNS_IP,
                    "--ca-file",
                    str(box.ca_file),
                ],
                ready="listening",
                stream="stderr",
            )
            setup = time.monotonic() - setup
            out = work / "results.jsonl"
            start = time.monotonic()
            result = box.run(
                "cli",
                [
                    PYTHON,
                    "-m",
                    "clearwall",
                    "probe",
                    str(args.list),
                    "--resolver",
                    MID_CLI_IP,
                    "--control",
                    f"tcp://{AUTH_DNS_IP}",
                    "--control-helper",
                    f"http://{CTL_IP}:8090",
                    "--ca-file",
                    str(box.ca_file),
                    "--out",
                    str(out),
                    "--no-progress",
                ],
                timeout=1800,
            )
            elapsed = time.monotonic() - start
            if result.returncode != 0:
                print(result.stderr, file=sys.stderr)
                return 1
            records = [json.loads(line) for line in out.read_text().splitlines()]
    counts = collections.Counter(r["clearwall"]["classification"] for r in records)
    summary = {
        "list": str(args.list),
        "targets": len(records),
        "skipped_rows": len(problems),
        "setup_seconds": round(setup, 1),
        "probe_seconds": round(elapsed, 1),
        "seconds_per_url": round(elapsed / max(len(records), 1), 4),
        "target_seconds": 600,
        "classifications": dict(sorted(counts.items())),
        "planned_interference": {k: len(v) for k, v in plan.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(f"probe: {len(records)} URLs in {elapsed:.1f} s (target ≤ 600 s)")
    return 0 if elapsed <= 600 else 1


if __name__ == "__main__":
    sys.exit(main())
