#!/usr/bin/env python3
"""DNS benchmark: clearwall against the anchor resolvers, same machine, same run.

Every server is started on loopback (each on its own port), pinned to core 0,
forwarding to one nsd upstream (pinned with dnsperf to core 1), with the same blocklist
loaded natively. dnsperf then runs three workloads against each, one server at a time,
the repeatable two in interleaved rounds (see ``bench_servers``):

* ``hit``     -- 1,000 allowed names, cache warmed first (cache hits);
* ``blocked`` -- names sampled from the blocklist (policy answers);
* ``miss``    -- 100,000 distinct allowed names, each sent once (cache misses to nsd);
* ``mixed``   -- one pass of what a network sends: 80% repeats of the 1,000 hot names,
  15% first-time names, 5% blocked names (``MIXED``).

Each server is also asked first-time names at a fixed 10,000 q/s, and the time it adds
over asking nsd directly is reported (p50 and p99, ``latency``); clearwall is restarted
once after its workloads and the time until it answers again is reported (``restart``).

With ``--transports`` including ``dot`` and ``doh`` (the default), clearwall and Unbound
also serve DNS over TLS (Unbound's ``tls-port``) and DNS over HTTPS (``https-port``,
HTTP/2 via nghttp2) with one self-signed certificate, and dnsperf (``-m dot``/``-m
doh``, GET) runs ``hit`` and ``blocked`` over each with many queries per connection
(``dot-hit``, ``doh-blocked``, …), then hits with a new connection (TLS handshake) per
100 queries (``dot-hit-new100``, ``doh-hit-new100``: the handshake's cost). After the
workloads, each opens ``IDLE_CONNECTIONS`` idle TLS connections per transport and the
growth of the server's RSS divided by their number is its memory per idle connection.

On two cores dnsperf saturates its own core, so the headline figure is queries per
server-CPU-second: completed queries divided by the CPU time (utime+stime of the
server's whole process tree) spent during the run. Results are printed as tables and
written to ``bench/results/dns-latest.json``.

The whole run happens inside a private network and PID namespace (``unshare``): only
loopback exists there, and every process started is killed when the run ends, even
on Ctrl-C or a crash. Run ``bench/dns.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from string import Template
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANCHORS = ROOT / "bench" / "anchors"
RESULTS = ROOT / "bench" / "results" / "dns-latest.json"
SHARED_DATA = ROOT.parent / "shared" / "data"
INSTALL_SCRIPT = ROOT / "scripts" / "install-bench-deps.sh"
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "clearwall-bench"

ALL_SERVERS = ("clearwall", "unbound", "pdns-recursor", "knot-resolver", "dnsmasq")
ANCHOR_NAMES = ALL_SERVERS[1:]
WORKLOADS = ("hit", "blocked", "miss", "mixed")
TRANSPORTS = ("udp", "dot", "doh")
TLS_SERVERS = ("clearwall", "unbound")  # the servers measured over DoT and DoH
TLS_PORT_OFFSET = {"dot": 100, "doh": 200}  # a server's DoT/DoH port = its UDP port + this
TLS_WORKLOADS = ("hit", "blocked", "hit-new100")
IDLE_CONNECTIONS = 200
ZONE = "cwbench."  # the allowed names live here, served by nsd
HIT_NAMES = 1_000
MISS_NAMES = 100_000
BLOCKED_SAMPLE = 10_000
# The mixed workload: one pass of MIXED_QUERIES in a fixed random order, made of
# (share, what): repeats of the hot (hit) names, each first-time name once, and blocked
# names drawn from MIXED_BLOCKED_NAMES others than the blocked workload's (so a blocked
# name is new at first, then repeats, as ad and tracker names do).
MIXED_QUERIES = 200_000
MIXED = ((0.80, "hot"), (0.15, "first"), (0.05, "blocked"))
MIXED_BLOCKED_NAMES = 2_000
FIRST_NAMES = 30_000  # = 15% of MIXED_QUERIES
# ``miss`` and ``mixed`` run up to this many rounds (``--repeat``), each with first-time
# names of its own (a repeat of the same names would be cache hits), median kept.
FRESH_ROUNDS = 3
# Latency: first-time names at a fixed rate, to each server and to nsd directly.
LATENCY_NAMES = 60_000
LATENCY_QPS = 10_000
LATENCY_SECONDS = 5.0
SERVER_CORE = "0"
CLIENT_CORE = "1"
DATA_VERSION = "v5"  # bump when the generated data changes shape
NSD_PORT = 25300
SERVER_PORT = 25353
READY_TIMEOUT_S = 900.0  # 1M rules: some servers take minutes to load them
DNSPERF_CLIENTS = 8
DNSPERF_OUTSTANDING = 128
DNSPERF_TIMEOUT_S = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Real blocklists at hand (plain domain lists); the rest of the rules are synthetic.
REAL_LISTS = (
    "hagezi/light.domains.txt",
    "hagezi/personal.domains.txt",
    "stevenblack/unified-hosts.trimmed-domains.txt",
    "blocklistproject/phishing.domains.txt",
    "blocklistproject/ransomware.domains.txt",
)
SYNTHETIC_TLDS = ("com", "net", "org", "info", "xyz", "top", "ru", "de", "io", "cn")
RESERVED_TLDS = frozenset(
    {
        "localhost",
        "local",
        "test",
        "invalid",
        "onion",
        "arpa",
        "example",
        "home",
        "lan",
        "internal",
        "cwbench",
    }
)
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
NAME_RE = re.compile(rf"^(?:{LABEL}\.)+{LABEL}$")


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Paths of the generated, deterministic benchmark inputs."""

    root: Path
    rules: int

    @property
    def domains(self) -> Path:
        """Blocklist, one name per line (clearwall's ``--format domains``)."""
        return self.root / "blocklist.domains.txt"

    @property
    def unbound(self) -> Path:
        """Blocklist as Unbound ``local-zone`` lines."""
        return self.root / "blocklist.unbound.conf"

    @property
    def rpz(self) -> Path:
        """Blocklist as an RPZ zone file (PowerDNS Recursor, Knot Resolver)."""
        return self.root / "blocklist.rpz"

    @property
    def dnsmasq(self) -> Path:
        """Blocklist as dnsmasq ``address=/name/`` lines."""
        return self.root / "blocklist.dnsmasq.conf"

    @property
    def zonefile(self) -> Path:
        """The nsd zone holding every allowed name."""
        return self.root / "cwbench.zone"

    def queries(self, workload: str) -> Path:
        """dnsperf input file of one workload."""
        return self.root / f"queries.{workload}.txt"

    @property
    def marker(self) -> Path:
        """Written last: the dataset is complete."""
        return self.root / "complete"


def hit_name(i: int) -> str:
    """The i-th allowed name of the cache-hit workload."""
    return f"h{i:04d}.hit.{ZONE}"


def _round(round_: int) -> str:
    return f"r{round_}." if round_ else ""


def miss_name(i: int, round_: int = 0) -> str:
    """The i-th allowed name of the cache-miss workload of round ``round_``."""
    return f"m{i:06d}.{_round(round_)}miss.{ZONE}"


def first_name(i: int, round_: int = 0) -> str:
    """The i-th first-time name of the mixed workload of round ``round_``."""
    return f"f{i:06d}.{_round(round_)}first.{ZONE}"


def fresh_workload(workload: str, round_: int) -> str:
    """The query file's name of ``miss`` or ``mixed`` in round ``round_``."""
    return f"{workload}-r{round_}" if round_ else workload


def latency_name(i: int) -> str:
    """The i-th first-time name of the latency measurement."""
    return f"l{i:06d}.lat.{ZONE}"


def real_blocked_names() -> list[str]:
    """Valid, de-duplicated names from the real lists in ../shared/data, in file order."""
    seen: dict[str, None] = {}
    for rel in REAL_LISTS:
        path = SHARED_DATA / rel
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            name = line.strip().lower().rstrip(".")
            if not name or name.startswith("#") or len(name) > 253:
                continue
            if name.rsplit(".", 1)[-1] in RESERVED_TLDS or not NAME_RE.match(name):
                continue
            if "xn--" in name and not valid_idna(name):
                continue
            seen.setdefault(name)
    return list(seen)


def valid_idna(name: str) -> bool:
    """True when every punycode label decodes under IDNA 2008 (as clearwall requires)."""
    try:
        import idna
    except ImportError:
        return False  # cannot check: leave the name out rather than risk a rejected rule
    try:
        idna.decode(name)
    except idna.IDNAError:
        return False
    return True


def synthetic_name(i: int) -> str:
    """A deterministic made-up name; a third of them one label deeper."""
    tld = SYNTHETIC_TLDS[i % len(SYNTHETIC_TLDS)]
    base = f"cwb{i:07d}-blocked.{tld}"
    return f"ads.{base}" if i % 3 == 0 else base


def blocked_names(rules: int) -> list[str]:
    """``rules`` distinct names: the real lists first, then synthetic names."""
    names = real_blocked_names()[:rules]
    taken = set(names)
    i = 0
    while len(names) < rules:
        name = synthetic_name(i)
        i += 1
        if name not in taken:
            names.append(name)
            taken.add(name)
    return names


def write_lines(path: Path, lines: Iterator[str] | Sequence[str]) -> None:
    """Write lines with a trailing newline each."""
    with path.open("w", encoding="ascii") as out:
        for line in lines:
            out.write(line)
            out.write("\n")


def write_zone(path: Path) -> None:
    """The nsd zone: SOA, NS and an A record per allowed name (TTL 1 day)."""
    header = [
        "$ORIGIN " + ZONE,
        "$TTL 86400",
        "@ IN SOA ns.cwbench. hostmaster.cwbench. 1 3600 600 86400 300",
        "@ IN NS ns.cwbench.",
        "ns IN A 127.0.0.1",
    ]
    hits = (f"{hit_name(i)} IN A 198.18.{i // 256}.{i % 256}" for i in range(HIT_NAMES))
    rounds = range(FRESH_ROUNDS)
    misses = (f"{miss_name(i, r)} IN A 198.19.{i // 256 % 256}.{i % 256}"
              for r in rounds for i in range(MISS_NAMES))  # fmt: skip
    firsts = (f"{first_name(i, r)} IN A 198.18.{100 + i // 256 % 100}.{i % 256}"
              for r in rounds for i in range(FIRST_NAMES))  # fmt: skip
    lat = (
        f"{latency_name(i)} IN A 198.19.{i // 256 % 256}.{i % 256}" for i in range(LATENCY_NAMES)
    )
    write_lines(path, [*header, *hits, *misses, *firsts, *lat])


def write_blocklists(ds: Dataset, names: list[str]) -> None:
    """The same blocklist in each server's native format."""
    write_lines(ds.domains, names)
    write_lines(ds.unbound, ["server:", *(f'local-zone: "{n}." always_nxdomain' for n in names)])
    write_lines(ds.dnsmasq, (f"address=/{n}/" for n in names))
    rpz_header = [
        "$TTL 60",
        "@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60",
        "@ IN NS localhost.",
    ]
    write_lines(ds.rpz, [*rpz_header, *(f"{n} CNAME ." for n in names)])


def write_queries(ds: Dataset, names: list[str]) -> None:
    """dnsperf inputs: hits, a deterministic sample of blocked names, misses, the mixed
    pass and the latency names."""
    write_lines(ds.queries("hit"), (f"{hit_name(i)} A" for i in range(HIT_NAMES)))
    sample = random.Random(20261123).sample(names, min(BLOCKED_SAMPLE, len(names)))
    write_lines(ds.queries("blocked"), (f"{n}. A" for n in sample))
    for r in range(FRESH_ROUNDS):
        misses = (f"{miss_name(i, r)} A" for i in range(MISS_NAMES))
        write_lines(ds.queries(fresh_workload("miss", r)), misses)
    rng = random.Random(20261204)
    taken = set(sample)
    others = [n for n in rng.sample(names, min(len(names), 3 * MIXED_BLOCKED_NAMES))
              if n not in taken][:MIXED_BLOCKED_NAMES]  # fmt: skip
    for r in range(FRESH_ROUNDS):  # round 0 is the pass earlier runs measured
        write_lines(ds.queries(fresh_workload("mixed", r)), mixed_pass(others, rng, r))
    write_lines(ds.queries("latency"), (f"{latency_name(i)} A" for i in range(LATENCY_NAMES)))


def mixed_pass(blocked: list[str], rng: random.Random, round_: int = 0) -> list[str]:
    """The mixed workload's queries of round ``round_``, shuffled: MIXED shares of
    MIXED_QUERIES."""
    counts = {what: round(share * MIXED_QUERIES) for share, what in MIXED}
    assert counts["first"] == FIRST_NAMES
    lines = [f"{hit_name(rng.randrange(HIT_NAMES))} A" for _ in range(counts["hot"])]
    lines += [f"{first_name(i, round_)} A" for i in range(counts["first"])]
    lines += [f"{rng.choice(blocked)}. A" for _ in range(counts["blocked"])]
    rng.shuffle(lines)
    return lines


def mixed_composition() -> dict[str, Any]:
    """What the mixed pass holds, for the report."""
    return {
        "queries": MIXED_QUERIES,
        "hot_repeats": {"share": 0.80, "names": HIT_NAMES, "cached": "warmed before"},
        "first_time": {"share": 0.15, "names": FIRST_NAMES, "each": "once"},
        "blocked": {"share": 0.05, "names": MIXED_BLOCKED_NAMES, "note": "new at first"},
        "order": "shuffled once (seed 20261204), one pass (dnsperf -n 1)",
    }


def prepare_dataset(cache: Path, rules: int) -> Dataset:
    """Generate (once; cached by rule count) every input file of the benchmark."""
    ds = Dataset(cache / f"data-{DATA_VERSION}-{rules}", rules)
    if ds.marker.exists():
        return ds
    ds.root.mkdir(parents=True, exist_ok=True)
    log(f"generating {rules:,} blocked names and {HIT_NAMES + MISS_NAMES:,} allowed names")
    names = blocked_names(rules)
    write_blocklists(ds, names)
    write_zone(ds.zonefile)
    write_queries(ds, names)
    ds.marker.write_text(dt.datetime.now(dt.UTC).isoformat() + "\n")
    return ds


# ----------------------------------------------------------------- process helpers


def log(message: str) -> None:
    """Progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def render(template: str, target: Path, **values: object) -> Path:
    """Render ``bench/anchors/<template>`` with ``${name}`` values into ``target``."""
    text = (ANCHORS / template).read_text(encoding="utf-8")
    try:
        rendered = Template(text).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise RuntimeError(f"bench/anchors/{template}: bad placeholder {exc}") from exc
    target.write_text(rendered)
    return target


def read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime+cutime+cstime in ticks) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ppid, ticks


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user+system, reaped children included) of the process tree."""
    ticks = 0
    for pid in process_tree(root):
        stat = read_stat(pid)
        if stat is not None:
            ticks += stat[1]
    return ticks / CLK_TCK


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS...), 0 if unavailable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size of a process (shared pages split among sharers)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


@dataclasses.dataclass(frozen=True)
class Memory:
    """Memory of a process tree, in MiB (sums over its processes)."""

    rss: float  # VmRSS
    anon: float  # RssAnon: private heap/stack
    file: float  # RssFile: mapped files (binaries, an mmap'd policy snapshot)
    pss: float  # proportional set size: shared pages split among the sharers


def tree_memory(root: int) -> Memory:
    """Sum VmRSS, RssAnon, RssFile and PSS over the process tree."""
    pids = process_tree(root)

    def total(field: str) -> float:
        return round(sum(status_kib(p, field) for p in pids) / 1024, 1)

    pss = round(sum(pss_kib(p) for p in pids) / 1024, 1)
    return Memory(total("VmRSS"), total("RssAnon"), total("RssFile"), pss)


class Proc:
    """A started server: its own session, output to a log file, always torn down."""

    def __init__(self, name: str, argv: list[str], logfile: Path, core: str) -> None:
        """Start ``argv`` pinned to ``core`` (taskset execs, so the pid is the server's)."""
        self.name = name
        self.logfile = logfile
        self.started = time.monotonic()
        with logfile.open("wb") as out:
            self.popen = subprocess.Popen(
                ["taskset", "-c", core, *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The server's pid (root of its process tree)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the server process runs."""
        return self.popen.poll() is None

    def tail(self, lines: int = 6) -> str:
        """Last lines of the server's output, for error reports."""
        with contextlib.suppress(OSError):
            text = self.logfile.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM the whole session, SIGKILL what is left after 5 s."""
        pids = process_tree(self.pid)
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
            end = time.monotonic() + grace
            while time.monotonic() < end:
                if self.popen.poll() is not None and not any(map(pid_alive, pids)):
                    return
                time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """True while a process runs; a zombie is reaped (we may be its reaper) and is dead."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if raw[raw.rindex(")") + 2] != "Z":
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def run_checked(argv: list[str], timeout: float = 600.0, cwd: Path | None = None) -> str:
    """Run a helper command; raise RuntimeError with its output if it fails."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        out = (done.stderr.strip() or done.stdout.strip()).splitlines()[-4:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {' | '.join(out)}")
    return done.stdout


# ------------------------------------------------------------------- DNS probing


def build_query(name: str, qid: int) -> bytes:
    """A minimal RD=1 A query with EDNS (4096), built by hand to avoid dependencies."""
    labels = b"".join(
        len(part).to_bytes(1, "big") + part.encode() for part in name.rstrip(".").split(".")
    )
    header = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01"
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"
    return header + labels + b"\x00\x00\x01\x00\x01" + opt


def ask(port: int, name: str, timeout: float = 0.5) -> tuple[int, int] | None:
    """Send one UDP query to 127.0.0.1:port: (rcode, ancount), or None on no answer.

    The socket is connected, so a port nobody listens on yet refuses at once (the ICMP
    error reaches only a connected socket): ``wait_ready`` then probes again 10 ms later
    instead of waiting out the timeout, which held every ready time to 0.3 s steps."""
    qid = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", port))
            sock.send(build_query(name, qid))
            while True:
                data = sock.recv(4096)
                if len(data) >= 12 and int.from_bytes(data[:2], "big") == qid:
                    return data[3] & 0x0F, int.from_bytes(data[6:8], "big")
        except OSError:
            return None


RCODE_NOERROR, RCODE_NXDOMAIN = 0, 3


def wait_ready(proc: Proc, port: int, deadline_s: float) -> float:
    """Seconds from start until the server answers an allowed name correctly."""
    probe = hit_name(HIT_NAMES - 1)
    end = proc.started + deadline_s
    while time.monotonic() < end:
        if not proc.alive():
            raise RuntimeError(f"exited with {proc.popen.returncode}: {proc.tail()}")
        answer = ask(port, probe, timeout=0.25)
        if answer is not None and answer[0] == RCODE_NOERROR and answer[1] > 0:
            return time.monotonic() - proc.started
        time.sleep(0.01)
    raise RuntimeError(f"not answering after {deadline_s:.0f} s: {proc.tail()}")


# -------------------------------------------------------------------- dnsperf


@dataclasses.dataclass
class WorkloadResult:
    """One dnsperf run against one server."""

    workload: str
    sent: int = 0
    completed: int = 0
    lost: int = 0
    wall_qps: float = 0.0
    avg_latency_ms: float = 0.0
    max_latency_ms: float = 0.0
    rcodes: dict[str, int] = dataclasses.field(default_factory=dict)
    server_cpu_s: float = 0.0
    qps_per_cpu: float = 0.0
    samples: list[float] = dataclasses.field(default_factory=list)  # q/CPU-s of each repeat
    error: str | None = None


def parse_dnsperf(workload: str, text: str) -> WorkloadResult:
    """Read dnsperf's statistics block into a WorkloadResult."""
    res = WorkloadResult(workload)

    def number(label: str) -> float:
        m = re.search(rf"{label}:\s+([\d.]+)", text)
        return float(m.group(1)) if m else 0.0

    res.sent = int(number("Queries sent"))
    res.completed = int(number("Queries completed"))
    res.lost = int(number("Queries lost"))
    res.wall_qps = number("Queries per second")
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min [\d.]+, max ([\d.]+)\)", text)
    if lat:
        res.avg_latency_ms = float(lat.group(1)) * 1000
        res.max_latency_ms = float(lat.group(2)) * 1000
    codes = re.search(r"Response codes:\s+(.*)", text)
    if codes:
        for code, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1)):
            res.rcodes[code] = int(count)
    return res


@dataclasses.dataclass(frozen=True)
class Load:
    """How dnsperf drives every workload of a run."""

    duration: float  # seconds per workload
    edns: bool = False  # queries carry EDNS0 (clearwall then adds EDE/SDE to block answers)
    repeat: int = 1  # runs of each repeatable workload (hit, blocked); the median is kept
    transports: tuple[str, ...] = ("udp",)  # udp always; dot, doh for TLS_SERVERS


def dnsperf(
    port: int,
    queries: Path,
    duration: float,
    once: bool,
    edns: bool,
    mode: str = "udp",
    per_conn: int = 0,
) -> str:
    """Run dnsperf on the client core at full rate (``mode``: udp, dot or doh; with
    ``per_conn``, a new connection per that many queries); return its output."""
    options = {
        "-s": "127.0.0.1",
        "-p": str(port),
        "-d": str(queries),
        "-l": str(duration),
        "-c": str(DNSPERF_CLIENTS),
        "-q": str(DNSPERF_OUTSTANDING),
        "-t": str(DNSPERF_TIMEOUT_S),
    }
    argv = ["taskset", "-c", CLIENT_CORE, "dnsperf", *(x for kv in options.items() for x in kv)]
    if once:
        argv += ["-n", "1"]
    if edns:
        argv.append("-e")
    if mode != "udp":
        argv += ["-m", mode]
    if mode == "doh":
        argv += ["-O", f"doh-uri=https://127.0.0.1:{port}/dns-query"]
    if per_conn:
        argv += ["-O", f"num-queries-per-conn={per_conn}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def split_workload(workload: str) -> tuple[str, str, int]:
    """(transport, query file's workload, queries per connection) of a workload name such
    as ``hit``, ``dot-blocked`` or ``doh-hit-new100``."""
    mode, _, rest = workload.partition("-")
    if mode not in TLS_PORT_OFFSET:
        return "udp", workload, 0
    base, _, new = rest.partition("-new")
    return mode, base, int(new) if new else 0


def measure(proc: Proc, port: int, ds: Dataset, workload: str, load: Load) -> WorkloadResult:
    """One workload: dnsperf at full rate, server CPU time measured around it."""
    cpu_before = tree_cpu_seconds(proc.pid)
    mode, base, per_conn = split_workload(workload)
    port = port + TLS_PORT_OFFSET.get(mode, 0)
    try:
        once = base.split("-")[0] in ("miss", "mixed")
        out = dnsperf(
            port, ds.queries(base), load.duration, once, load.edns, mode=mode, per_conn=per_conn
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return WorkloadResult(workload, error=str(exc))
    cpu = tree_cpu_seconds(proc.pid) - cpu_before
    res = parse_dnsperf(workload, out)
    res.server_cpu_s = round(cpu, 3)
    res.qps_per_cpu = round(res.completed / cpu) if cpu > 0 else 0.0
    if not proc.alive():
        res.error = f"server died: {proc.tail()}"
    return res


@dataclasses.dataclass
class Latency:
    """First-time names at a fixed rate: dnsperf's per-query latencies, in ms."""

    answered: int = 0
    lost: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    added_p50_ms: float | None = None  # over asking nsd directly, same names and rate
    added_p99_ms: float | None = None
    server_cpu_s: float = 0.0
    error: str | None = None


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of sorted ``values``, nearest rank."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def measure_latency(port: int, ds: Dataset, proc: Proc | None = None) -> Latency:
    """dnsperf at LATENCY_QPS over the latency names (each once): p50/p99 from its
    per-query output (``-v``), the server's CPU around it when ``proc`` is given."""
    argv = ["taskset", "-c", CLIENT_CORE, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
            "-d", str(ds.queries("latency")), "-l", str(LATENCY_SECONDS), "-n", "1",
            "-Q", str(LATENCY_QPS), "-c", str(DNSPERF_CLIENTS), "-q", str(DNSPERF_OUTSTANDING),
            "-t", str(DNSPERF_TIMEOUT_S), "-v"]  # fmt: skip
    cpu_before = tree_cpu_seconds(proc.pid) if proc is not None else 0.0
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=LATENCY_SECONDS + 60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Latency(error=str(exc))
    if done.returncode != 0:
        return Latency(error=f"dnsperf failed: {done.stderr.strip()[-300:]}")
    # "> NOERROR l000123.lat.cwbench. A 0.000123": rcode, name, type, seconds
    times = sorted(
        float(line.rsplit(" ", 1)[1]) * 1000
        for line in done.stdout.splitlines()
        if line.startswith("> ") and line.count(" ") >= 4
    )
    stats = parse_dnsperf("latency", done.stdout)
    cpu = tree_cpu_seconds(proc.pid) - cpu_before if proc is not None else 0.0
    return Latency(
        answered=len(times),
        lost=stats.lost,
        p50_ms=round(percentile(times, 0.50), 4),
        p99_ms=round(percentile(times, 0.99), 4),
        max_ms=round(times[-1], 3) if times else 0.0,
        server_cpu_s=round(cpu, 3),
    )


def added_over(result: Latency, direct: Latency | None) -> Latency:
    """``result`` with the time added over the direct measurement filled in."""
    if direct is not None and not direct.error and not result.error and result.answered:
        result.added_p50_ms = round(result.p50_ms - direct.p50_ms, 4)
        result.added_p99_ms = round(result.p99_ms - direct.p99_ms, 4)
    return result


def median_run(runs: list[WorkloadResult]) -> WorkloadResult:
    """The run of median q/CPU-s among ``runs`` (of one server and workload), with every
    run's figure in ``samples`` and the losses of all of them."""
    ok = sorted((r for r in runs if r.error is None), key=lambda r: r.qps_per_cpu)
    chosen = ok[(len(ok) - 1) // 2] if ok else runs[-1]
    chosen.samples = [r.qps_per_cpu for r in runs]
    chosen.lost = sum(r.lost for r in runs)  # a loss in any repeat counts
    return chosen


# ------------------------------------------------------------------- servers


@dataclasses.dataclass
class ServerResult:
    """Everything measured for one server (one row of the summary table)."""

    server: str
    label: str
    version: str = ""
    workers: int = 1
    setup_s: float = 0.0
    ready_s: float = 0.0  # first start (no saved snapshot): the median of ready_samples
    ready_samples: list[float] = dataclasses.field(default_factory=list)
    rss_ready_mib: float = 0.0
    rss_mib: float = 0.0  # after hit, blocked and miss
    rss_end_mib: float = 0.0  # after mixed and the latency names too
    pss_mib: float = 0.0
    rss_anon_mib: float = 0.0
    rss_file_mib: float = 0.0
    blocks_correctly: bool = False
    workloads: dict[str, WorkloadResult] = dataclasses.field(default_factory=dict)
    # KiB of RSS per idle TLS connection, per transport (dot, doh)
    idle_conn_kib: dict[str, float] = dataclasses.field(default_factory=dict)
    latency: Latency | None = None
    restart_s: float | None = None  # clearwall: ready again after a restart (same store)
    error: str | None = None


@dataclasses.dataclass
class Launch:
    """How to start one server: its command and how long its setup took."""

    argv: list[str]
    version: str
    setup_s: float = 0.0


def version_of(argv: list[str]) -> str:
    """First line of a ``--version``-style output, best effort."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        for line in (done.stdout + done.stderr).splitlines():
            if re.search(r"\d+\.\d+", line):
                return re.sub(r"^\w{3} \d+ [\d:]+ ", "", line.strip())[:80]
    return ""


def launch_unbound(ds: Dataset, work: Path, port: int, upstream: int, workers: int) -> Launch:
    """Unbound: local-zone always_nxdomain blocklist, checked by unbound-checkconf."""
    cert, key = tls_pair(work.parent)
    conf = render(
        "unbound.conf",
        work / "unbound.conf",
        port=port,
        dot_port=port + TLS_PORT_OFFSET["dot"],
        doh_port=port + TLS_PORT_OFFSET["doh"],
        cert=cert,
        key=key,
        upstream_port=upstream,
        workdir=work,
        blocklist=ds.unbound,
    )
    run_checked(["unbound-checkconf", str(conf)])
    return Launch(["unbound", "-d", "-c", str(conf)], version_of(["unbound", "-V"]))


def launch_pdns(ds: Dataset, work: Path, port: int, upstream: int, workers: int) -> Launch:
    """PowerDNS Recursor: RPZ file from the Lua config."""
    render("recursor.conf", work / "recursor.conf", port=port, upstream_port=upstream, workdir=work)
    render("recursor.lua", work / "recursor.lua", rpz=ds.rpz)
    argv = ["pdns_recursor", f"--config-dir={work}"]
    run_checked([*argv, "--config=check"], timeout=60)
    return Launch(argv, version_of(["pdns_recursor", "--version"]))


def launch_kresd(ds: Dataset, work: Path, port: int, upstream: int, workers: int) -> Launch:
    """Knot Resolver: policy.rpz with the RPZ file, STUB to nsd."""
    conf = render(
        "kresd.conf",
        work / "kresd.conf",
        port=port,
        upstream_port=upstream,
        workdir=work,
        rpz=ds.rpz,
    )
    rundir = work / "kresd-run"
    rundir.mkdir(exist_ok=True)
    argv = ["kresd", "--noninteractive", "-c", str(conf), str(rundir)]
    return Launch(argv, version_of(["kresd", "--version"]))


def launch_dnsmasq(ds: Dataset, work: Path, port: int, upstream: int, workers: int) -> Launch:
    """dnsmasq: address=/name/ lines, checked by ``dnsmasq --test``."""
    conf = render(
        "dnsmasq.conf",
        work / "dnsmasq.conf",
        port=port,
        upstream_port=upstream,
        blocklist=ds.dnsmasq,
    )
    run_checked(["dnsmasq", "--test", f"--conf-file={conf}"], timeout=300)
    return Launch(["dnsmasq", f"--conf-file={conf}"], version_of(["dnsmasq", "--version"]))


def clearwall_cmd() -> list[str]:
    """The clearwall command of this checkout (the venv's entry point)."""
    exe = VENV_BIN / "clearwall"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "clearwall"]


def clearwall_has_serve() -> bool:
    """True when this checkout has the ``clearwall serve`` command."""
    return (ROOT / "src" / "clearwall" / "cli" / "serve.py").exists()


def launch_clearwall(ds: Dataset, work: Path, port: int, upstream: int, workers: int) -> Launch:
    """clearwall: the blocklist as one order in a SQLite store, then ``clearwall serve``.

    The store is built once per run (in ``clearwall-store/`` beside the servers' work
    directories) and copied for each worker count, so ×2 does not import 1M rules again.
    """
    if not clearwall_has_serve():
        raise RuntimeError("clearwall serve is not in this checkout yet")
    cw = clearwall_cmd()
    store = work.parent / "clearwall-store"
    setup_s = 0.0
    if not (store / "complete").exists():
        shutil.rmtree(store, ignore_errors=True)
        store.mkdir()
        started = time.monotonic()
        clearwall_load_policy(cw, clearwall_options(store, port, upstream, workers), ds, store)
        setup_s = time.monotonic() - started
        (store / "complete").write_text(f"{setup_s:.1f}\n")
        log(f"clearwall: store with {ds.rules:,} rules ready in {setup_s:.1f} s")
    shutil.copytree(store, work, dirs_exist_ok=True)
    common = clearwall_options(work, port, upstream, workers)
    argv = [*cw, "serve", "--dns", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
            "--workers", str(workers), "--web", "off", *common]  # fmt: skip
    # DNS only, like the anchors (they run no web app): --web off, reported in the output.
    return Launch(argv, f"clearwall {git_head()}", round(setup_s, 1))


CLEARWALL_QUERY_LOG = False  # --query-log: the one option of a run that reaches the config


def tls_pair(run_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made once per run, with the
    openssl command), shared by every server's DoT and DoH listeners."""
    cert, key = run_dir / "tls" / "cert.pem", run_dir / "tls" / "key.pem"
    if not cert.exists():
        cert.parent.mkdir(exist_ok=True)
        run_checked(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                     "/CN=bench.localhost", "-addext",
                     "subjectAltName=DNS:bench.localhost,IP:127.0.0.1",
                     "-keyout", str(key), "-out", str(cert)])  # fmt: skip
    return cert, key


def clearwall_options(work: Path, port: int, upstream: int, workers: int) -> list[str]:
    """``--db``/``--config`` for a store in ``work`` (the config file is rendered there)."""
    db = f"sqlite:///{work / 'clearwall.db'}"
    cert, key = tls_pair(work.parent)
    conf = render("clearwall.toml", work / "clearwall.toml", db=db, workdir=work, port=port,
                  dot_port=port + TLS_PORT_OFFSET["dot"], doh_port=port + TLS_PORT_OFFSET["doh"],
                  cert=cert, key=key, upstream_port=upstream, workers=workers,
                  query_log="true" if CLEARWALL_QUERY_LOG else "false")  # fmt: skip
    return ["--db", db, "--config", str(conf)]


def clearwall_load_policy(cw: list[str], common: list[str], ds: Dataset, work: Path) -> None:
    """Load the blocklist as one operator security order for loopback clients.

    The loopback network is the benchmark's jurisdiction, its operator the authority, and
    the domain list the order's rules (NXDOMAIN, like the anchors' native lists).
    """

    def cli(*args: str) -> str:
        return run_checked([*cw, *args, *common], timeout=3600, cwd=work).strip()

    cli("init")
    cli("jurisdictions", "add", "bench", "--name", "Benchmark network",
        "--network", "127.0.0.0/8")  # fmt: skip
    authority = cli("authorities", "add", "--name", "Benchmark operator", "--kind", "operator",
                    "--jurisdiction", "bench").splitlines()[-1]  # fmt: skip
    cli("orders", "add", "--authority", authority, "--title", "Benchmark blocklist",
        "--legal-basis", "Operator security policy", "--reference", "BENCH-1",
        "--category", "malware", "--action", "nxdomain", "--rules", str(ds.domains),
        "--format", "domains")  # fmt: skip


LAUNCHERS = {
    "clearwall": launch_clearwall,
    "unbound": launch_unbound,
    "pdns-recursor": launch_pdns,
    "knot-resolver": launch_kresd,
    "dnsmasq": launch_dnsmasq,
}


def git_head() -> str:
    """Short commit of this checkout, for the record."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    return ""


@dataclasses.dataclass
class Running:
    """A started server awaiting its workloads."""

    result: ServerResult
    port: int
    proc: Proc | None = None
    runs: dict[str, list[WorkloadResult]] = dataclasses.field(default_factory=dict)
    launch: Launch | None = None  # how it was started (a restart starts it so again)
    work: Path | None = None


def start_server(
    server: str, workers: int, ds: Dataset, run_dir: Path, port: int, upstream: int, load: Load
) -> Running:
    """Start one server on ``port``, wait for it, check it blocks, warm its cache."""
    label = server if workers == 1 else f"{server} ×{workers}"
    run = Running(ServerResult(server, label, workers=workers), port)
    result = run.result
    work = run_dir / f"{server}-{workers}"
    work.mkdir()
    try:
        launch = LAUNCHERS[server](ds, work, port, upstream, workers)
        run.launch, run.work = launch, work
        result.version, result.setup_s = launch.version, launch.setup_s
        log(f"{label}: starting ({result.version})")
        run.proc = Proc(server, launch.argv, work / "server.log", SERVER_CORE)
        result.ready_s = round(wait_ready(run.proc, port, READY_TIMEOUT_S), 2)
        result.ready_samples = [result.ready_s]
        result.rss_ready_mib = tree_memory(run.proc.pid).rss
        log(f"{label}: ready in {result.ready_s} s, RSS {result.rss_ready_mib} MiB")
        result.blocks_correctly = check_blocking(ds, port)
        warm = dnsperf(port, ds.queries("hit"), 30, once=True, edns=load.edns)
        if parse_dnsperf("warm", warm).completed < HIT_NAMES:
            log(f"{label}: warm-up incomplete")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        fail(run, exc)
    return run


def fail(run: Running, exc: BaseException) -> None:
    """Record a server's failure and stop it; it takes no further workloads."""
    run.result.error = str(exc)[:400]
    log(f"{run.result.label}: FAILED: {run.result.error}")
    if run.proc is not None:
        run.proc.stop()
        run.proc = None


def run_workload(
    run: Running, ds: Dataset, workload: str, load: Load, key: str | None = None
) -> None:
    """One dnsperf run of ``workload`` against a started server, logged and kept (under
    ``key``, the workload whose median it counts towards, when that is another name)."""
    if run.proc is None:
        return
    res = measure(run.proc, run.port, ds, workload, load)
    run.runs.setdefault(key or workload, []).append(res)
    log(
        f"{run.result.label}: {workload}: {res.completed:,} answered, {res.lost} lost, "
        f"{res.qps_per_cpu:,.0f} q/CPU-s {res.rcodes} {res.error or ''}"
    )
    if res.error and not run.proc.alive():
        fail(run, RuntimeError(res.error))


def bench_servers(
    specs: list[tuple[str, int]],
    ds: Dataset,
    run_dir: Path,
    upstream: int,
    load: Load,
    direct: Latency | None = None,
) -> list[ServerResult]:
    """Benchmark every (server, workers) with their runs interleaved in time.

    All servers are started first (each on its own port, all pinned to core 0, idle but
    for the one under load). Then ``load.repeat`` rounds each run ``hit`` and
    ``blocked`` (and their DoT/DoH variants on ``TLS_SERVERS``) on every server in turn,
    starting one server later each round, so that every server is measured across the
    same stretch of time: on a shared machine the capacity left to us drifts by tens of
    percent over minutes, and sequential runs would charge that drift to whichever
    server ran in the slow minutes. Each server keeps its median run. ``miss`` and then
    ``mixed`` run the same way, interleaved, in up to FRESH_ROUNDS rounds, each round
    with first-time names of its own (the same names again would be cache hits); each
    server's memory is read after its first ``miss`` (after the three workloads every
    earlier run had). Then, server by server, the latency measurement, the memory again
    (``rss_end_mib``), the memory per idle TLS connection (``idle_cost``), and it is
    stopped; clearwall (one worker) is then started again on the same store and its time
    to answer again is its ``restart_s``.
    """
    runs = [
        start_server(server, workers, ds, run_dir, SERVER_PORT + i, upstream, load)
        for i, (server, workers) in enumerate(specs)
    ]
    try:
        for round_ in range(max(1, load.repeat)):
            order = runs[round_ % len(runs) :] + runs[: round_ % len(runs)]
            for workload in repeatable(load):
                for run in order:
                    if "-" not in workload or run.result.server in TLS_SERVERS:
                        run_workload(run, ds, workload, load)
        for round_ in range(fresh_rounds(load)):
            order = runs[round_ % len(runs) :] + runs[: round_ % len(runs)]
            for run in order:
                run_workload(run, ds, fresh_workload("miss", round_), load, key="miss")
                if round_ == 0 and run.proc is not None:
                    # RSS after hit, blocked and miss, as every earlier run measured it.
                    mem = tree_memory(run.proc.pid)
                    result = run.result
                    result.rss_mib, result.pss_mib = mem.rss, mem.pss
                    result.rss_anon_mib, result.rss_file_mib = mem.anon, mem.file
            for run in order:
                run_workload(run, ds, fresh_workload("mixed", round_), load, key="mixed")
        for run in runs:
            if run.proc is not None:
                run.result.latency = added_over(measure_latency(run.port, ds, run.proc), direct)
                lat = run.result.latency
                log(f"{run.result.label}: latency at {LATENCY_QPS:,} q/s: p50 {lat.p50_ms} ms, "
                    f"p99 {lat.p99_ms} ms (added {lat.added_p50_ms} / {lat.added_p99_ms}), "
                    f"{lat.lost} lost {lat.error or ''}")  # fmt: skip
                run.result.rss_end_mib = tree_memory(run.proc.pid).rss
                # After both RSS figures: the idle connections' memory is not the cache's.
                if run.result.server in TLS_SERVERS:
                    for mode in load.transports:
                        if mode in TLS_PORT_OFFSET:
                            run.result.idle_conn_kib[mode] = idle_cost(
                                run.proc, run.port + TLS_PORT_OFFSET[mode], mode
                            )
            for workload, done in run.runs.items():
                chosen = median_run(done)
                chosen.workload = workload  # a later round's run reports as its workload
                run.result.workloads[workload] = chosen
            if run.proc is not None:
                run.proc.stop()
                run.proc = None
                if run.result.server == "clearwall" and run.result.workers == 1:
                    measure_restart(run)
        measure_first_starts(runs, ds, run_dir, upstream, load.repeat)
    finally:
        for run in runs:
            if run.proc is not None:
                run.proc.stop()
    return [run.result for run in runs]


def measure_first_starts(
    runs: list[Running], ds: Dataset, run_dir: Path, upstream: int, repeat: int
) -> None:
    """With ``--repeat N``, N - 1 more first starts of every server, each from scratch
    (clearwall on a fresh copy of the store: no saved snapshot), in turn, starting one
    server later each round as the workloads do; each server's ``ready_s`` becomes the
    median of its N. One start is a single sample of a second or two that the machine's
    other load moves by a fifth; its median over rounds, like the workloads', is the
    figure."""
    for round_ in range(1, max(1, repeat)):
        order = runs[round_ % len(runs) :] + runs[: round_ % len(runs)]
        for run in order:
            result = run.result
            if result.error is not None or run.launch is None:
                continue
            work = run_dir / f"{result.server}-{result.workers}-start{round_}"
            work.mkdir()
            launch = LAUNCHERS[result.server](ds, work, run.port, upstream, result.workers)
            proc = Proc(result.server, launch.argv, work / "server.log", SERVER_CORE)
            try:
                result.ready_samples.append(round(wait_ready(proc, run.port, READY_TIMEOUT_S), 2))
                log(f"{result.label}: first start again, ready in {result.ready_samples[-1]} s")
            except RuntimeError as exc:
                log(f"{result.label}: first start again failed: {exc}")
            finally:
                proc.stop()
            shutil.rmtree(work, ignore_errors=True)
            samples = sorted(result.ready_samples)
            result.ready_s = samples[(len(samples) - 1) // 2]


def fresh_rounds(load: Load) -> int:
    """How many rounds ``miss`` and ``mixed`` run: ``--repeat``, at most FRESH_ROUNDS
    (each round needs first-time names of its own)."""
    return min(max(1, load.repeat), FRESH_ROUNDS)


def repeatable(load: Load) -> list[str]:
    """The workloads run in every round: hit and blocked over UDP, then over each TLS
    transport of the run, with the handshake-per-100 variant."""
    names = ["hit", "blocked"]
    for mode in load.transports:
        if mode in TLS_PORT_OFFSET:
            names += [f"{mode}-{w}" for w in TLS_WORKLOADS]
    return names


def idle_cost(proc: Proc, port: int, mode: str) -> float:
    """KiB of server RSS per idle TLS connection: ``IDLE_CONNECTIONS`` connections are
    opened (handshake done, ALPN ``dot`` or ``h2``), held a second, measured, closed."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["dot"] if mode == "dot" else ["h2"])
    before = tree_memory(proc.pid).rss
    held = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn = context.wrap_socket(raw, server_hostname="bench.localhost")
            if mode == "doh":  # the HTTP/2 preface and an empty SETTINGS frame
                conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5))
            held.append(conn)
        time.sleep(1.0)
        after = tree_memory(proc.pid).rss
    except OSError as exc:
        log(f"idle {mode} connections: {exc}")
        return 0.0
    finally:
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()
    return round((after - before) * 1024 / IDLE_CONNECTIONS, 1)


def measure_restart(run: Running) -> None:
    """Start a stopped server again as before (same store, same snapshot directory):
    seconds until it answers an allowed name correctly, then stop it."""
    if run.launch is None or run.work is None:
        return
    label = run.result.label
    proc = Proc(run.result.server, run.launch.argv, run.work / "restart.log", SERVER_CORE)
    try:
        run.result.restart_s = round(wait_ready(proc, run.port, READY_TIMEOUT_S), 2)
        log(f"{label}: restarted, ready in {run.result.restart_s} s")
    except RuntimeError as exc:
        log(f"{label}: restart failed: {exc}")
    finally:
        proc.stop()


def check_blocking(ds: Dataset, port: int) -> bool:
    """A few blocked names answer NXDOMAIN and an allowed one NOERROR."""
    names = ds.queries("blocked").read_text().splitlines()[:5]
    for line in names:
        answer = ask(port, line.split()[0], timeout=1.0)
        if answer is None or answer[0] != RCODE_NXDOMAIN:
            log(f"blocked name {line.split()[0]} answered {answer}")
            return False
    answer = ask(port, hit_name(0), timeout=1.0)
    return answer is not None and answer[0] == RCODE_NOERROR


def start_nsd(ds: Dataset, run_dir: Path) -> Proc:
    """The shared upstream: nsd on the client core, serving every allowed name."""
    work = run_dir / "nsd"
    work.mkdir()
    conf = render(
        "nsd.conf", work / "nsd.conf", port=NSD_PORT, workdir=work, zone=ZONE, zonefile=ds.zonefile
    )
    run_checked(["nsd-checkconf", str(conf)])
    run_checked(["nsd-checkzone", ZONE, str(ds.zonefile)], timeout=300)
    proc = Proc("nsd", ["nsd", "-d", "-c", str(conf)], work / "nsd.out", CLIENT_CORE)
    ready = wait_ready(proc, NSD_PORT, 120)
    log(f"nsd upstream ready in {ready:.2f} s on 127.0.0.1:{NSD_PORT}")
    return proc


# -------------------------------------------------------------------- report


def ratio(a: float, b: float) -> float | None:
    """a/b rounded, None when either side is missing."""
    return round(a / b, 3) if a and b else None


def qpc(result: ServerResult, workload: str) -> float:
    """Queries per server-CPU-second of a workload, 0 when it did not run."""
    w = result.workloads.get(workload)
    return float(w.qps_per_cpu) if w and not w.error else 0.0


def tls_workloads(results: list[ServerResult]) -> list[str]:
    """The DoT/DoH workloads that ran for any of ``results``, in a stable order."""
    seen = {w for r in results for w in r.workloads if "-" in w}
    order = [f"{m}-{w}" for m in TLS_PORT_OFFSET for w in TLS_WORKLOADS]
    return [w for w in order if w in seen]


def compute_ratios(results: list[ServerResult]) -> dict[str, dict[str, float | None]]:
    """clearwall (one worker) against each anchor: per workload and for RSS."""
    cw = next((r for r in results if r.server == "clearwall" and r.workers == 1), None)
    if cw is None or cw.error:
        return {}
    table: dict[str, dict[str, float | None]] = {}
    for r in results:
        if r.server == "clearwall" or r.error:
            continue
        row = {w: ratio(qpc(cw, w), qpc(r, w)) for w in WORKLOADS}
        row["rss"] = ratio(cw.rss_mib, r.rss_mib)
        for w in tls_workloads([cw, r]):
            row[w] = ratio(qpc(cw, w), qpc(r, w))
        row["ready"] = ratio(cw.ready_s, r.ready_s)  # first start, lower is better
        table[r.server] = row
    return table


def worker_scaling(results: list[ServerResult]) -> dict[str, Any]:
    """clearwall with N workers against one: aggregate queries per server-CPU-second."""
    cws = {r.workers: r for r in results if r.server == "clearwall" and not r.error}
    one = cws.get(1)
    out: dict[str, Any] = {}
    for n, r in sorted(cws.items()):
        if n == 1 or one is None:
            continue
        out[f"{n}_vs_1"] = {w: ratio(qpc(r, w), qpc(one, w)) for w in WORKLOADS}
    if out:
        out["note"] = (
            "all workers share core 0 on this 2-core machine (dnsperf and nsd hold core 1):"
            " this shows contention overhead, not scaling"
        )
    return out


def fmt_k(value: float) -> str:
    """Queries per CPU-second as e.g. 203.4k."""
    return f"{value / 1000:,.1f}k" if value else "—"


def fmt_ms(value: float | None) -> str:
    """Milliseconds as e.g. 0.042, or a dash."""
    return f"{value:.3f}" if value is not None else "—"


def fmt_ratio(value: float | None) -> str:
    """A ratio as 1.23×."""
    return f"{value:.2f}×" if value is not None else "—"


def print_tables(results: list[ServerResult], report: dict[str, Any]) -> None:
    """Summary, per-workload detail and clearwall's ratios, with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(140, shutil.get_terminal_size().columns))
    meta = report["meta"]
    summary = Table(
        title=f"DNS benchmark: {meta['rules']:,} rules, {meta['duration_s']} s "
        "per workload, queries per server-CPU-second"
    )
    for col in (
        "server",
        *WORKLOADS,  # one column per workload, as the rows below give them
        "lost",
        "ready s",
        "RSS MiB",
        "blocks",
        "error",
    ):
        summary.add_column(col, justify="left" if col in ("server", "error") else "right")
    for r in results:
        lost = sum(w.lost for w in r.workloads.values())
        summary.add_row(
            r.label,
            *(fmt_k(qpc(r, w)) for w in WORKLOADS),
            str(lost) if r.workloads else "—",
            f"{r.ready_s:.2f}" if r.ready_s else "—",
            f"{r.rss_mib:,.0f}" if r.rss_mib else "—",
            "yes" if r.blocks_correctly else "no",
            (r.error or "")[:60],
        )
    console.print(summary)

    detail = Table(title="Per workload")
    for col in (
        "server",
        "workload",
        "answered",
        "lost",
        "wall q/s",
        "CPU s",
        "q/CPU-s",
        "avg ms",
        "max ms",
        "rcodes",
    ):
        detail.add_column(
            col, justify="left" if col in ("server", "workload", "rcodes") else "right"
        )
    for r in results:
        for w in r.workloads.values():
            detail.add_row(
                r.label,
                w.workload,
                f"{w.completed:,}",
                str(w.lost),
                f"{w.wall_qps:,.0f}",
                f"{w.server_cpu_s:.2f}",
                fmt_k(w.qps_per_cpu),
                f"{w.avg_latency_ms:.3f}",
                f"{w.max_latency_ms:.1f}",
                " ".join(f"{k}:{v}" for k, v in w.rcodes.items()),
            )
    console.print(detail)

    if report["ratios"]:
        rt = Table(title="clearwall ÷ anchor (q/CPU-s; RSS: lower is better)")
        for col in ("anchor", *WORKLOADS, "rss"):
            rt.add_column(col, justify="left" if col == "anchor" else "right")
        for anchor, row in report["ratios"].items():
            rt.add_row(anchor, *(fmt_ratio(row[k]) for k in (*WORKLOADS, "rss")))
        console.print(rt)
    tls = tls_workloads(results)
    if tls:
        tt = Table(title="DoT and DoH: queries per server-CPU-second; KiB per idle connection")
        for col in ("server", *tls, "idle dot KiB", "idle doh KiB"):
            tt.add_column(col, justify="left" if col == "server" else "right")
        for r in results:
            if r.server in TLS_SERVERS and r.workers == 1:
                tt.add_row(
                    r.label,
                    *(fmt_k(qpc(r, w)) for w in tls),
                    *(f"{r.idle_conn_kib.get(m, 0):.1f}" for m in ("dot", "doh")),
                )
        unbound = report["ratios"].get("unbound", {})
        tt.add_row("clearwall ÷ unbound", *(fmt_ratio(unbound.get(w)) for w in tls), "", "")
        console.print(tt)
    lat = Table(
        title=f"Latency: first-time names at {LATENCY_QPS:,} q/s (ms; added = over nsd directly)"
    )
    for col in ("server", "answered", "lost", "p50", "p99", "max", "added p50", "added p99"):
        lat.add_column(col, justify="left" if col == "server" else "right")
    direct = (report["meta"]["latency"].get("direct_to_nsd") or [None])[0]
    if direct:
        lat.add_row("nsd directly", f"{direct['answered']:,}", str(direct["lost"]),
                    f"{direct['p50_ms']:.3f}", f"{direct['p99_ms']:.3f}",
                    f"{direct['max_ms']:.1f}", "", "")  # fmt: skip
    for r in results:
        if r.latency is not None:
            x = r.latency
            lat.add_row(r.label, f"{x.answered:,}", str(x.lost), f"{x.p50_ms:.3f}",
                        f"{x.p99_ms:.3f}", f"{x.max_ms:.1f}", fmt_ms(x.added_p50_ms),
                        fmt_ms(x.added_p99_ms))  # fmt: skip
    console.print(lat)
    for r in results:
        if len(r.ready_samples) > 1:
            samples = ", ".join(f"{x:.2f}" for x in r.ready_samples)
            console.print(
                f"{r.label}: first start ready in {r.ready_s:.2f} s (median of {samples})"
            )
    for r in results:
        if r.restart_s is not None:
            console.print(
                f"{r.label}: first start ready in {r.ready_s:.2f} s, restart {r.restart_s:.2f} s"
            )
    for key, value in report["workers"].items():
        console.print(f"clearwall workers {key}: {value}")
    console.print(f"clearwall web app: {report['meta'].get('clearwall_web', '?')}")
    console.print(f"command: {report['meta']['command']}")


def markdown_summary(results: list[ServerResult], report: dict[str, Any]) -> str:
    """The summary, ratio and latency tables as Markdown, for bench/README.md."""
    lines = [
        "| server | hit q/CPU-s | blocked q/CPU-s | miss q/CPU-s | mixed q/CPU-s | lost"
        " | avg ms hit/blocked/miss/mixed | max ms | ready s | restart s | RSS MiB | blocks"
        " | error |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in results:
        ws = [r.workloads.get(w) for w in WORKLOADS]
        avg = "/".join(f"{w.avg_latency_ms:.2f}" if w else "—" for w in ws)
        mx = max((w.max_latency_ms for w in ws if w), default=0.0)
        lost = sum(w.lost for w in ws if w)
        restart = f"{r.restart_s:.2f}" if r.restart_s is not None else "—"
        lines.append(
            f"| {r.label} | {' | '.join(fmt_k(qpc(r, w)) for w in WORKLOADS)} | {lost} | {avg}"
            f" | {mx:.1f} | {r.ready_s:.2f} | {restart} | {r.rss_mib:,.0f} |"
            f" {'yes' if r.blocks_correctly else 'no'} | {(r.error or '')[:80]} |"
        )
    if report["ratios"]:
        lines += [
            "",
            "| clearwall ÷ | hit | blocked | miss | mixed | RSS | first start |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for anchor, row in report["ratios"].items():
            cells = " | ".join(fmt_ratio(row[k]) for k in (*WORKLOADS, "rss", "ready"))
            lines.append(f"| {anchor} | {cells} |")
    tls = tls_workloads(results)
    if tls:
        lines += [
            "",
            "| server | " + " | ".join(tls) + " | idle KiB DoT / DoH |",
            "|---|" + "--:|" * len(tls) + "--:|",
        ]
        for r in results:
            if r.server in TLS_SERVERS and r.workers == 1:
                cells = " | ".join(fmt_k(qpc(r, w)) for w in tls)
                idle = " / ".join(f"{r.idle_conn_kib.get(m, 0):.1f}" for m in ("dot", "doh"))
                lines.append(f"| {r.label} | {cells} | {idle} |")
        unbound = report["ratios"].get("unbound", {})
        cells = " | ".join(fmt_ratio(unbound.get(w)) for w in tls)
        lines.append(f"| clearwall ÷ unbound | {cells} | |")
    lines += [
        "",
        f"| first-time names at {LATENCY_QPS:,} q/s | answered | lost | p50 ms | p99 ms"
        " | added p50 ms | added p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for i, direct in enumerate(report["meta"]["latency"].get("direct_to_nsd") or []):
        when = "before" if i == 0 else "after"
        lines.append(
            f"| nsd directly ({when}) | {direct['answered']:,} | {direct['lost']} |"
            f" {direct['p50_ms']:.3f} | {direct['p99_ms']:.3f} | | |"
        )
    for r in results:
        if r.latency is not None:
            x = r.latency
            lines.append(
                f"| {r.label} | {x.answered:,} | {x.lost} | {x.p50_ms:.3f} | {x.p99_ms:.3f} |"
                f" {fmt_ms(x.added_p50_ms)} | {fmt_ms(x.added_p99_ms)} |"
            )
    return "\n".join(lines)


def build_report(results: list[ServerResult], args: argparse.Namespace) -> dict[str, Any]:
    """The JSON document written to bench/results/dns-latest.json."""
    return {
        "meta": {
            "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "command": args.command_line,
            "commit": git_head(),
            "rules": args.rules,
            "clearwall_query_log": args.query_log,
            "duration_s": args.duration,
            "repeat": args.repeat,
            "hit_names": HIT_NAMES,
            "miss_names": MISS_NAMES,
            "blocked_sample": BLOCKED_SAMPLE,
            "mixed": mixed_composition(),
            "latency": {
                "qps": LATENCY_QPS,
                "seconds": LATENCY_SECONDS,
                "names": LATENCY_NAMES,
                "direct_to_nsd": getattr(args, "direct_latency", None),
            },
            "dnsperf": f"-c {DNSPERF_CLIENTS} -q {DNSPERF_OUTSTANDING} -t {DNSPERF_TIMEOUT_S}"
            + (" -e" if args.edns else ""),
            "cpus": os.cpu_count(),
            "server_core": SERVER_CORE,
            "client_core": CLIENT_CORE,
            "kernel": os.uname().release,
            "isolated_netns": args.in_netns,
            "edns": args.edns,
            "clearwall_web": "off: DNS only, as the anchors run no web app",
            "loadavg_start": [round(x, 2) for x in getattr(args, "loadavg_start", ())],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "servers": [dataclasses.asdict(r) for r in results],
        "ratios": compute_ratios(results),
        "workers": worker_scaling(results),
    }


# ---------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rules", type=int, default=None, help="blocklist size (default 1000000)")
    p.add_argument("--duration", type=float, default=None, help="seconds per workload (10)")
    p.add_argument(
        "--servers",
        default=",".join(ALL_SERVERS),
        help=f"comma-separated subset of {','.join(ALL_SERVERS)}",
    )
    p.add_argument("--workers", default="1,2", help="clearwall worker counts to run (1,2)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run hit and blocked this many times per server and report the median (1)",
    )
    p.add_argument(
        "--quick", action="store_true", help="100k rules, 3 s per workload: proves the harness"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help="where generated data is kept between runs",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="JSON result file")
    p.add_argument(
        "--transports",
        default=",".join(TRANSPORTS),
        help="udp always runs; dot and doh add the encrypted rows for clearwall and Unbound",
    )
    p.add_argument(
        "--edns",
        action="store_true",
        help="dnsperf sends EDNS0 (clearwall then adds EDE/SDE to block answers)",
    )
    p.add_argument(
        "--query-log",
        action="store_true",
        help="run clearwall with [logging] query_log = true (its cost: docs/querylog.md)",
    )
    add_run_options(p)
    args = p.parse_args(argv)
    global CLEARWALL_QUERY_LOG
    CLEARWALL_QUERY_LOG = args.query_log
    args.rules = args.rules or (100_000 if args.quick else 1_000_000)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.command_line = args.command_line or " ".join(["bench/dns.py", *argv])
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(servers) - set(ALL_SERVERS))
    if unknown:
        p.error(f"unknown servers: {', '.join(unknown)}")
    args.server_list = servers
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    if set(transports) - set(TRANSPORTS):
        p.error(f"unknown transports: {', '.join(sorted(set(transports) - set(TRANSPORTS)))}")
    args.transport_list = ["udp", *(t for t in transports if t != "udp")]
    args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    return args


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The options every benchmark of this folder shares: Markdown output, the install
    step, the private namespaces (and the two the re-executed run is given)."""
    p.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    p.add_argument("--no-install", action="store_true", help="skip scripts/install-bench-deps.sh")
    p.add_argument(
        "--no-netns",
        action="store_true",
        help="do not isolate the run in a private network/PID namespace",
    )
    p.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--command-line", default=None, help=argparse.SUPPRESS)


def reexec_isolated(argv: Sequence[str], command_line: str, script: Path | None = None) -> int:
    """Run ``script`` (default: this program) again inside fresh network + PID
    namespaces (loopback only).

    When the namespace's first process (the inner run) ends, the kernel kills every
    process left in it, so no server can outlive the run. On Ctrl-C or SIGTERM here the
    inner run is asked to stop (it tears its servers down), then killed if it lingers.
    """
    program = (script or Path(__file__)).resolve()
    inner = [sys.executable, str(program), *argv, "--in-netns",
             "--command-line", command_line]  # fmt: skip
    cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child", "--", *inner]
    child = subprocess.Popen(cmd)
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        return child.wait()
    except KeyboardInterrupt:
        for pid in process_tree(child.pid)[1:2]:  # the inner run, PID 1 of the namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()  # --kill-child: the namespace and all in it die with it
            child.wait()
        return 130


def raise_interrupt(signum: int, frame: object) -> None:
    """Signal handler: turn SIGTERM into KeyboardInterrupt so cleanup runs."""
    raise KeyboardInterrupt


def in_isolated_setup() -> None:
    """Bring loopback up inside the fresh network namespace; stop on SIGTERM."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    signal.signal(signal.SIGTERM, raise_interrupt)


def can_isolate() -> bool:
    """True when unshare can make network and PID namespaces here."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return probe.returncode == 0


def run(args: argparse.Namespace) -> int:
    """Generate data, start nsd, benchmark every requested server, report."""
    load = Load(args.duration, args.edns, args.repeat, tuple(args.transport_list))
    missing = [t for t in ("dnsperf", "taskset", "nsd") if shutil.which(t) is None]
    if missing:
        log(f"missing tools: {', '.join(missing)} (run scripts/install-bench-deps.sh)")
        return 2
    ds = prepare_dataset(args.cache_dir, args.rules)
    args.loadavg_start = os.getloadavg()
    results: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="clearwall-bench-run-") as tmp:
        run_dir = Path(tmp)
        nsd = start_nsd(ds, run_dir)
        try:
            direct = measure_latency(NSD_PORT, ds)
            log(f"nsd directly at {LATENCY_QPS:,} q/s: p50 {direct.p50_ms} ms, "
                f"p99 {direct.p99_ms} ms, {direct.lost} lost {direct.error or ''}")  # fmt: skip
            specs = [
                (server, workers)
                for server in args.server_list
                for workers in (args.worker_list if server == "clearwall" else [1])
            ]
            results = bench_servers(specs, ds, run_dir, NSD_PORT, load, direct)
            direct_after = measure_latency(NSD_PORT, ds)
        finally:
            nsd.stop()
    args.direct_latency = [dataclasses.asdict(direct), dataclasses.asdict(direct_after)]
    report = build_report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(results, report)
    if args.markdown:
        print(markdown_summary(results, report))
    log(f"wrote {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: install deps, isolate, run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return launch(argv, parse_args(argv), run, Path(__file__))


def launch(
    argv: list[str],
    args: argparse.Namespace,
    body: Callable[[argparse.Namespace], int],
    script: Path,
) -> int:
    """What a benchmark's ``main`` does with its parsed options: inside the namespaces,
    run ``body``; outside, install the packages (unless --no-install), then re-execute
    ``script`` inside fresh namespaces, or run ``body`` here when that cannot be done."""
    if args.in_netns:
        in_isolated_setup()
        try:
            return body(args)
        except KeyboardInterrupt:
            log("interrupted; servers stopped")
            return 130
    if not args.no_install:
        try:
            subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, timeout=1800)
        except (subprocess.SubprocessError, OSError) as exc:
            log(f"installing the benchmark's packages failed ({exc}); see {INSTALL_SCRIPT}")
            return 2
    if not args.no_netns and can_isolate():
        return reexec_isolated(argv, args.command_line, script)
    log("running without namespace isolation (not root or no unshare)")
    try:
        return body(args)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
