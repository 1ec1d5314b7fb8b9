"""Benchmark: probe the 1,722-line Citizen Lab global list in the network in a box.

Every URL of the list keeps its real host name, resolved by the box's authoritative
server to one of 200 local web-server addresses (sites are told apart by Host/SNI, one
certificate from a throw-away CA covers them all). The middlebox interferes with a
deterministic 4 % of the names (forged answers, TCP resets, blockpages, dropped TLS
handshakes, EDE blocks), so every code path is timed, not only the fast one. The
operator's resolver is ``clearwall serve`` (one court order, published on its log and
served by ``clearwall ledger serve``); the probe runs with its default concurrency and
timeouts, the test helper and a control resolver, and reconciles every name with the log.

    sudo .venv/bin/python bench/probe.py [--list PATH] [--output bench/results/probe-latest.json]

Prints the wall-clock time and the classification counts; target: at most 10 minutes.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "probe"))
sys.path.insert(0, str(ROOT / "src"))

from netbox import AUTH_DNS_IP, CTL_IP, MID_CLI_IP, PYTHON, NetBox, can_build  # noqa: E402

from clearwall.probe.inputs import load_targets  # noqa: E402

DEFAULT_LIST = ROOT.parent / "shared" / "data" / "citizenlab" / "global.csv"


def clearwall(cwd: Path, *args: str) -> str:
    """Run one ``clearwall`` command with its store and log in ``cwd``."""
    env = {**os.environ, "CLEARWALL_DB": f"sqlite:///{cwd / 'cw.db'}"}
    result = subprocess.run(
        [PYTHON, "-m", "clearwall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"clearwall {' '.join(args[:2])}: {result.stderr.strip()}")
    return result.stdout


def make_store(store: Path, blocked: list[str]) -> tuple[Path, str]:
    """The operator's store: jurisdiction xa, one court order for ``blocked``; its vkey."""
    store.mkdir()
    clearwall(store, "init")
    clearwall(store, "jurisdictions", "add", "xa", "--name", "Bench", "--network", "127.0.0.0/8")
    clearwall(store, "authorities", "add", "--name", "Bench court", "--kind", "court",
              "--jurisdiction", "xa")  # fmt: skip
    rules = store / "rules.txt"
    rules.write_text("\n".join(blocked) + "\n", encoding="utf-8")
    clearwall(store, "orders", "add", "--authority", "1", "--title", "Bench order",
              "--legal-basis", "Bench act", "--reference", "B-1", "--category", "court-order",
              "--action", "nxdomain", "--rules", str(rules),
              "--effective-from", "2020-01-01")  # fmt: skip
    return store, clearwall(store, "ledger", "key").strip().splitlines()[-1]


def rewrite_literals(source: Path, local_ip: dict[str, str], out: Path) -> Path:
    """A copy of the list with every IP-literal host replaced by its local address."""
    with (
        source.open(encoding="utf-8", newline="") as src,
        out.open("w", encoding="utf-8", newline="") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst)
        for row in reader:
            if row and reader.line_num > 1:
                parts = urlsplit(row[0].strip())
                if parts.hostname in local_ip:
                    row[0] = urlunsplit(parts._replace(netloc=local_ip[parts.hostname]))
            writer.writerow(row)
    return out


def main() -> int:
    """Build the box, run the probe over the list, report the time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", type=Path, default=DEFAULT_LIST)
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "probe-latest.json"
    )
    parser.add_argument("--results", type=Path, help="Also keep the probe's JSON lines here.")
    args = parser.parse_args()
    reason = can_build()
    if reason:
        print(f"cannot build the network in a box: {reason}", file=sys.stderr)
        return 2
    targets, problems = load_targets(args.list)
    # IP-literal URLs (DoH endpoints, 1.1.1.1) cannot be mapped by DNS: give each a local
    # address of its own and rewrite the list, so no probe packet aims at a real address.
    literals = sorted({t.name for t in targets if t.is_ip})
    local_ip = {ip: f"198.18.7.{10 + i}" for i, ip in enumerate(literals)}
    names = sorted({t.name for t in targets if not t.is_ip})
    zone = {name: f"198.18.{1 + i % 200 // 100}.{10 + i % 100}" for i, name in enumerate(names)}
    # Each kind of interference only where it shows: blockpages (port 80 DNAT) on
    # plain-HTTP sites, dropped ClientHellos on HTTPS sites.
    schemes: dict[str, set[str]] = collections.defaultdict(set)
    for t in targets:
        schemes[t.name].add(t.scheme)
    plan: dict[str, list[str]] = collections.defaultdict(list)
    kinds = ("forge", "reset", "blockpage", "tlsdrop", "block")
    for i, name in enumerate(names[::25]):
        kind = kinds[i % len(kinds)]
        if kind == "blockpage" and schemes[name] != {"http"}:
            kind = "forge"
        if kind == "tlsdrop" and schemes[name] != {"https"}:
            kind = "block"
        plan[kind].append(name)
    # Interference by address: give those names addresses of their own.
    for j, name in enumerate(plan["reset"] + plan["blockpage"] + plan["tlsdrop"]):
        zone[name] = f"198.18.5.{10 + j}"
    zone.update({ip: ip for ip in local_ip.values()})  # served, and in the certificate
    with tempfile.TemporaryDirectory(prefix="cw-probe-bench-") as tmp:
        work = Path(tmp)
        setup = time.monotonic()
        listing = rewrite_literals(args.list, local_ip, work / "list.csv")
        store, vkey = make_store(work / "store", plan["block"])
        env = ["env", f"CLEARWALL_DB=sqlite:///{store / 'cw.db'}"]
        with NetBox(work, zone) as box:
            box.start(
                "mid",
                [*env, PYTHON, "-m", "clearwall", "serve", "--dns", "127.0.0.1:5300",
                 "--web", "off", "--upstream", f"{AUTH_DNS_IP}:53"],
                stream="none",
                cwd=store,
            )  # fmt: skip
            box.wait_port("mid", "127.0.0.1", 5300, wait=60)
            box.middle(
                forge={n: "198.19.255.1" for n in plan["forge"]},
                blocks={},
                upstream="127.0.0.1:5300",
            )
            box.interfere(
                reset=[zone[n] for n in plan["reset"]],
                tls_drop=[zone[n] for n in plan["tlsdrop"]],
                blockpage=[zone[n] for n in plan["blockpage"]],
            )
            box.start(
                "ctl",
                [*env, PYTHON, "-m", "clearwall", "ledger", "serve", "--web", f"{CTL_IP}:8080"],
                stream="none",
                cwd=store,
            )  # fmt: skip
            box.wait_port("ctl", CTL_IP, 8080, wait=60)
            box.start(
                "ctl",
                [PYTHON, "-m", "clearwall", "probe-helper", "--allow-private",
                 "--listen", f"{CTL_IP}:8090",
                 "--resolver", AUTH_DNS_IP, "--ca-file", str(box.ca_file)],
                ready="listening",
                stream="stderr",
            )  # fmt: skip
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
                    str(listing),
                    "--resolver",
                    MID_CLI_IP,
                    "--control",
                    f"tcp://{AUTH_DNS_IP}",
                    "--control-helper",
                    f"http://{CTL_IP}:8090",
                    "--ca-file",
                    str(box.ca_file),
                    "--log",
                    f"http://{CTL_IP}:8080",
                    "--key",
                    vkey,
                    "--jurisdiction",
                    "xa",
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
            if args.results:
                args.results.write_text(out.read_text(), encoding="utf-8")
    counts = collections.Counter(r["clearwall"]["classification"] for r in records)
    verdicts = collections.Counter(r["clearwall"]["reconciliation"]["verdict"] for r in records)
    summary = {
        "list": str(args.list),
        "targets": len(records),
        "skipped_rows": len(problems),
        "setup_seconds": round(setup, 1),
        "probe_seconds": round(elapsed, 1),
        "seconds_per_url": round(elapsed / max(len(records), 1), 4),
        "target_seconds": 600,
        "classifications": dict(sorted(counts.items())),
        "verdicts": dict(sorted(verdicts.items())),
        "planned_interference": {k: len(v) for k, v in plan.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print(f"probe: {len(records)} URLs in {elapsed:.1f} s (target ≤ 600 s)")
    return 0 if elapsed <= 600 else 1


if __name__ == "__main__":
    sys.exit(main())
