"""Benchmark of the compiled matcher against a Python ``set``, on generated names and real lists.

Usage: ``.venv/bin/python bench/matcher.py [--sizes 1000000,10000000] [--json out]``

Each measurement runs in a fresh subprocess so that RSS is that of a process doing only
that job: *build* compiles and saves a snapshot (compile time, peak RSS); *serve* imports
only ``clearwall.policy.snapshot``, loads the snapshot (RSS before/after, ready time) and
times single-core lookups for exact hits, subdomain hits and misses; *set* does the same
with the names in a ``set`` (exact lookup plus a walk up the name's suffixes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Running as a script puts bench/ first on sys.path, where other benchmarks' modules
# (e.g. bench/dns*.py) would shadow real packages such as dnspython's ``dns``.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
DATA = Path(os.environ.get("CLEARWALL_DATA", ROOT.parent / "shared" / "data"))
RESULTS = HERE / "results" / "matcher-latest.json"

ALPHA = "abcdefghijklmnopqrstuvwxyz"
TLDS = ("com", "net", "org", "de", "fr", "ru", "info", "xyz", "top", "co.uk")
SAMPLE = 25_000  # names per lookup kind; below the snapshot's verdict memo limit
MIN_SECONDS = 1.0  # each lookup rate is timed over at least this long

REAL_LISTS = (
    ("hagezi/light.adblock.txt", "de"),
    ("hagezi/light.domains.txt", "fr"),
    ("blocklistproject/phishing.domains.txt", "*"),
    ("stevenblack/unified-hosts.trimmed-domains.txt", "*"),
    ("oisd/oisd_small.plus-wildcard.txt", "*"),
)


def generated(i: int, salt: bytes = b"") -> str:
    """The i-th generated name: deterministic, so any process can regenerate samples."""
    h = hashlib.blake2b(i.to_bytes(8, "little") + salt, digest_size=20).digest()
    label = "".join(ALPHA[b % 26] for b in h[1 : 7 + h[0] % 8])
    tld = TLDS[h[15] % len(TLDS)]
    if h[16] % 5 == 0:  # a fifth of the names are hosts below a registrable name
        return f"{ALPHA[h[17] % 26]}{h[18] % 100}.{label}.{tld}"
    return f"{label}.{tld}"


def rss() -> dict[str, float]:
    """This process's resident set in MiB: total, anonymous and file-backed."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def peak_rss_mib() -> float:
    """Peak RSS of this process so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rate(lookup: Callable[[str], object], names: list[str]) -> float:
    """Lookups per CPU second of ``lookup`` over ``names`` (one core), after a warm-up.

    CPU time rather than wall time: the machine is shared, and a per-core rate should not
    count the time this process waited for a core.
    """
    for name in names:
        lookup(name)
    done = 0
    start = time.process_time()
    while True:
        for name in names:
            lookup(name)
        done += len(names)
        elapsed = time.process_time() - start
        if elapsed >= MIN_SECONDS:
            return done / elapsed


def samples(size: int) -> dict[str, list[str]]:
    """Query names for generated policies: listed names, subdomains of them, misses."""
    step = max(1, size // SAMPLE)
    listed = [generated(i) for i in range(0, size, step)][:SAMPLE]
    return {
        "hit": listed,
        "subdomain_hit": [f"www.{n}" for n in listed],
        "miss": [generated(i, b"miss") for i in range(SAMPLE)],
    }


def real_samples(names: list[str]) -> dict[str, list[str]]:
    """Query names for the real lists: listed names, subdomains, and top sites not listed."""
    listed = names[:: max(1, len(names) // SAMPLE)][:SAMPLE]
    blocked = set(names)
    top = []
    with open(DATA / "toplists/alexa-top-65535-2023-02-09.csv") as src:
        for line in src:
            name = line.strip().split(",")[1].lower()
            if name not in blocked:
                top.append(name)
    return {"hit": listed, "subdomain_hit": [f"www.{n}" for n in listed], "miss": top}


# -- workers (each runs in its own process) ----------------------------------------------


def work_build(size: int, out: Path) -> dict[str, Any]:
    """Compile ``size`` generated subtree rules (streamed from a generator) and save."""
    from clearwall.policy.model import CompiledOrder, RuleKind, RuleSpec
    from clearwall.policy.snapshot import PolicySnapshot

    def rules() -> Iterator[RuleSpec]:
        for i in range(size):
            yield RuleSpec(RuleKind.SUBTREE, generated(i))

    order = _order(1, "de")
    # The compile times below include making the rules; this is that share alone.
    generate = time.process_time()
    for _rule in rules():
        pass
    generate = time.process_time() - generate
    cpu = time.process_time()
    start = time.perf_counter()
    snap = PolicySnapshot.compile(
        [CompiledOrder(order.order, order.authority, rules())],  # type: ignore[arg-type]
        [],
    )
    compiled = time.perf_counter() - start
    cpu = time.process_time() - cpu
    snap.save(out)
    return {
        "generate_cpu_s": round(generate, 2),
        "compile_s": round(compiled, 2),
        "compile_cpu_s": round(cpu, 2),
        "keys": len(snap),
        "build_peak_rss_mib": peak_rss_mib(),
    }


def work_build_real(out: Path) -> dict[str, Any]:
    """Parse the real lists (one order each) and compile them into one snapshot."""
    from clearwall.formats import parse_file
    from clearwall.policy.model import CompiledOrder, Jurisdiction
    from clearwall.policy.snapshot import PolicySnapshot

    start = time.perf_counter()
    orders = []
    names: list[str] = []
    for index, (relpath, jurisdiction) in enumerate(REAL_LISTS, start=1):
        result = parse_file(DATA / relpath)
        base = _order(index, "de" if jurisdiction == "*" else jurisdiction, jurisdiction == "*")
        orders.append(CompiledOrder(base.order, base.authority, tuple(result.rules)))
        names.extend(r.value for r in result.rules)
    parsed = time.perf_counter() - start
    start = time.perf_counter()
    cpu = time.process_time()
    snap = PolicySnapshot.compile(orders, [Jurisdiction("de", "de"), Jurisdiction("fr", "fr")])
    compiled = time.perf_counter() - start
    cpu = time.process_time() - cpu
    snap.save(out)
    (out.parent / "names.txt").write_text("\n".join(names))
    return {
        "rules": len(names),
        "keys": len(snap),
        "parse_s": round(parsed, 2),
        "compile_s": round(compiled, 2),
        "compile_cpu_s": round(cpu, 2),
        "build_peak_rss_mib": peak_rss_mib(),
    }


def work_serve(path: Path, make_queries: Callable[[], dict[str, list[str]]]) -> dict[str, Any]:
    """Load a saved snapshot and time lookups; imports only the snapshot module.

    RSS is read right after loading, before the query samples are made.
    """
    before_import = rss()
    from clearwall.policy.snapshot import PolicySnapshot

    before = rss()
    start = time.perf_counter()
    cpu = time.process_time()
    snap = PolicySnapshot.load(path)
    ready = time.perf_counter() - start
    cpu = time.process_time() - cpu
    after = rss()
    match = snap.match
    result: dict[str, Any] = {
        "rss_before_import_mib": before_import["VmRSS"],
        "rss_before_load_mib": before["VmRSS"],
        "rss_after_load_mib": after["VmRSS"],
        "rss_after_load_file_mib": after.get("RssFile"),
        "ready_ms": round(ready * 1000, 1),
        "ready_cpu_ms": round(cpu * 1000, 1),
    }
    queries = make_queries()
    for kind, names in queries.items():
        cold = time.process_time()
        blocked = sum(match(n, "de").blocked for n in names)
        cold = time.process_time() - cold
        result[f"{kind}_first_per_s"] = round(len(names) / cold)
        result[f"{kind}_blocked_fraction"] = round(blocked / len(names), 3)
        result[f"{kind}_per_s"] = round(rate(lambda n: match(n, "de"), names))
    end = rss()
    result["rss_after_lookups_mib"] = end["VmRSS"]
    result["rss_after_lookups_anon_mib"] = end.get("RssAnon")
    result["rss_after_lookups_file_mib"] = end.get("RssFile")
    return result


def work_set(names: Iterator[str], queries: dict[str, list[str]]) -> dict[str, Any]:
    """The baseline: the same names in a Python set, exact lookup plus suffix walk."""
    before = rss()
    start = time.perf_counter()
    listed = set(names)
    built = time.perf_counter() - start
    after = rss()

    def blocked(name: str) -> bool:
        if name in listed:
            return True
        dot = name.find(".")
        while dot >= 0:
            if name[dot + 1 :] in listed:
                return True
            dot = name.find(".", dot + 1)
        return False

    result: dict[str, Any] = {
        "set_build_s": round(built, 2),
        "set_rss_mib": after["VmRSS"],
        "set_rss_added_mib": round(after["VmRSS"] - before["VmRSS"], 1),
    }
    for kind, query in queries.items():
        result[f"set_{kind}_per_s"] = round(rate(blocked, query))
    return result


def _order(id: int, jurisdiction: str, everywhere: bool = False) -> Any:
    import datetime as dt

    from clearwall.model import Action, AuthorityKind, Category
    from clearwall.policy.model import Authority, CompiledOrder, Order

    return CompiledOrder(
        Order(
            id=id,
            authority_id=id,
            title=f"bench order {id}",
            legal_basis="bench",
            reference=f"bench-{id}",
            category=Category.MALWARE,
            action=Action.NXDOMAIN,
            issued=dt.date(2026, 1, 1),
            effective_from=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            all_jurisdictions=everywhere,
        ),
        Authority(id, f"bench authority {id}", AuthorityKind.CERT, jurisdiction),
    )


def worker(args: argparse.Namespace) -> None:
    """Run one measurement in this process and print its JSON on stdout."""
    path = Path(args.path)
    if args.worker == "build":
        out = work_build(args.size, path)
    elif args.worker == "build-real":
        out = work_build_real(path)
    elif args.worker == "serve":
        size = args.size
        out = work_serve(path, lambda: samples(size) if size else _real_queries(path))
    else:
        if args.size:
            out = work_set((generated(i) for i in range(args.size)), samples(args.size))
        else:
            names = _real_names(path)
            out = work_set(iter(names), real_samples(names))
    print(json.dumps(out))


def _real_names(path: Path) -> list[str]:
    return (path.parent / "names.txt").read_text().split("\n")


def _real_queries(path: Path) -> dict[str, list[str]]:
    return real_samples(_real_names(path))


def run(worker_name: str, path: Path, size: int) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and return its JSON result."""
    command = [sys.executable, __file__, "--worker", worker_name, "--path", str(path)]
    command += ["--size", str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{worker_name} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def disk_size_mib(path: Path) -> float:
    """Total size of a saved snapshot directory in MiB."""
    return round(sum(f.stat().st_size for f in path.resolve().iterdir()) / 2**20, 1)


def measure(label: str, size: int, tmp: Path) -> dict[str, Any]:
    """All measurements for one policy: build, serve and the set baseline."""
    path = tmp / label / "snapshot"
    path.parent.mkdir(parents=True)
    row: dict[str, Any] = {"policy": label}
    row.update(run("build" if size else "build-real", path, size))
    row["disk_mib"] = disk_size_mib(path)
    row.update(run("serve", path, size))
    # Upper bound for a process holding the snapshot: every mapped page resident.
    row["rss_all_pages_mib"] = round(row["rss_after_load_mib"] + row["disk_mib"], 1)
    row.update(run("set", path, size))
    return row


COLUMNS = (
    ("policy", "policy"),
    ("keys", "names"),
    ("compile_cpu_s", "compile cpu s"),
    ("build_peak_rss_mib", "build peak MiB"),
    ("disk_mib", "disk MiB"),
    ("rss_before_load_mib", "RSS pre MiB"),
    ("rss_after_load_mib", "RSS loaded MiB"),
    ("rss_all_pages_mib", "+all pages MiB"),
    ("ready_ms", "ready ms"),
    ("ready_cpu_ms", "ready cpu ms"),
    ("hit_first_per_s", "1st hit/s"),
    ("hit_per_s", "hit/s"),
    ("subdomain_hit_per_s", "sub-hit/s"),
    ("miss_per_s", "miss/s"),
    ("set_rss_mib", "set RSS MiB"),
    ("set_hit_per_s", "set hit/s"),
    ("set_subdomain_hit_per_s", "set sub/s"),
    ("set_miss_per_s", "set miss/s"),
)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a plain text table."""
    cells = [[h for _k, h in COLUMNS]]
    for row in rows:
        cells.append([_fmt(row.get(k)) for k, _h in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def _fmt(value: Any) -> str:
    if isinstance(value, int | float) and value >= 10_000:
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"
    return str(value)


def main() -> None:
    """Parse arguments, run every measurement, print the table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000", help="comma-separated generated sizes")
    parser.add_argument("--no-real", action="store_true", help="skip the real lists")
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    tmp = Path(tempfile.mkdtemp(prefix="clearwall-bench-"))
    rows = []
    try:
        for size in sizes:
            rows.append(measure(f"generated-{size}", size, tmp))
            print(table(rows[-1:]), flush=True)
        if not args.no_real:
            rows.append(measure("real-lists", 0, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(table(rows))
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
