#!/usr/bin/env python3
"""Hot-swap benchmark: how fast a running gateway with a large policy enforces a change.

The requirement measured: "a policy change made through the CLI/store is enforced
within 1 s without restarting and without dropping in-flight queries".

Setup (reused from ``bench/dns.py``, imported as a module): the deterministic dataset
(an N-name blocklist, the nsd zone ``cwbench.``), nsd on loopback as the upstream, and
a SQLite store holding the blocklist as one order, built once through the CLI. For each
worker count, ``clearwall serve`` is started (pinned to core 0, ``--log-level INFO``,
its output kept in the run directory) on a copy of that store and waited for.

Optionally dnsperf then sends the ``hit`` workload (the 1,000 cached allowed names) at
a moderate fixed rate during the whole trial phase; its sent/completed/lost counts show
whether any query was dropped while policies were swapped.

Each trial:

1. takes 10 allowed names never used before (``mNNNNNN.miss.cwbench.``), asks the
   gateway for each and requires NOERROR with an address: they are now *cached* as
   allowed, the realistic case a swap has to overrule;
2. publishes them as a new order (``clearwall orders add``, the big order's authority,
   action nxdomain), the CLI running in a thread while the harness reads the store's
   policy version every millisecond: t0 is the moment it grows (the commit; the CLI's
   own run time, its start-up included, is recorded apart);
3. from t0, polls the gateway every 5 ms, each round one query per name from a fresh UDP socket
   (a fresh source port, so with several workers sharing the port through SO_REUSEPORT
   every worker gets asked), until all 10 answer NXDOMAIN in one round and keep doing
   so for 0.5 s. ``enforce_s`` is the time from t0 to the end of the first round of that
   steady run (a round that regresses resets it, and is counted);
4. revokes the order (``clearwall orders revoke``) and measures ``unblock_s`` the same
   way, until every name answers NOERROR with an address again;
5. waits until the gateway is quiet: its log shows the store's current policy version
   compiled and no log line for 2 s.

Each phase times out after 120 s (reported as a timeout, not a crash). The gateway's
log lines about compiles and swaps (``policy version N compiled in X s``) and any
warnings or errors are parsed into the JSON and attached to the trial they fall in.
The RSS of the gateway's process tree is read before and after the trials and sampled
every 0.2 s in between (peak). The harness itself, the CLI and dnsperf run on core 1
(with nsd), the gateway and its compiler on core 0.

To measure a commit other than the working tree (which may be mid-edit), extract it
and put it first on the path: ``git archive HEAD src | tar -x -C /tmp/cw-head``, copy
the built C extensions (``src/**/*.so``, when their ``.c`` files are unchanged) beside
their sources there, then ``PYTHONPATH=/tmp/cw-head/src .venv/bin/python
bench/hot_swap.py``; the gateway, its compiler and the CLI all inherit it. The JSON
records which source was imported and, for this checkout's ``src/``, which files differ
from HEAD.

Results are printed as a table (``--markdown`` adds Markdown) and written to
``bench/results/hot-swap-latest.json``. As in ``bench/dns.py`` the run happens in
private network and PID namespaces, so every process it starts dies with it; every wait
has a timeout. Run ``bench/hot_swap.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import math
import os
import random
import re
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = ROOT / "bench" / "results" / "hot-swap-latest.json"


def _load_bench_dns() -> ModuleType:
    """bench/dns.py as a module named ``bench_dns`` (the name ``dns`` is dnspython's)."""
    spec = importlib.util.spec_from_file_location("bench_dns", HERE / "dns.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / 'dns.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_dns"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bd = _load_bench_dns()
log = bd.log

NAMES_PER_TRIAL = 10
POLL_INTERVAL_S = 0.005
ROUND_TIMEOUT_S = 0.5  # a poll query unanswered after this long counts as unanswered
CONFIRM_S = 0.5  # all names must keep the wanted answer this long
PHASE_TIMEOUT_S = 120.0
COMMIT_POLL_S = 0.001  # how often the store's version is read while the CLI runs
QUIET_S = 2.0  # no gateway log line for this long between trials
QUIET_TIMEOUT_S = 120.0
CLI_TIMEOUT_S = 600.0
LOAD_QPS = 20_000
LOAD_CLIENTS = 8
LOAD_OUTSTANDING = 128
LOAD_TIMEOUT_S = 2  # dnsperf counts a query lost after this long without an answer
MEMORY_SAMPLE_S = 0.2
LOAD_CPU_WINDOW_S = 3.0  # gateway CPU under the load alone, before the first change
PORT = bd.SERVER_PORT

LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (?:(worker-\d+) )?([A-Z]+) ([\w.]+): (.*)$"
)
# "policy version N compiled in X s" (whole), "... compiled in X s as an overlay over
# version M", "policy version N consolidated in X s" (the background whole compile).
COMPILED = re.compile(r"policy version (\d+)\b.*?(compiled|consolidated) in ([\d.]+) ?s(.*)")
SWAPPED = re.compile(r"swapped to version (\d+)")


# ------------------------------------------------------------------ polling


@dataclasses.dataclass
class Watch:
    """How long until every name gave the wanted answer, steadily (one phase)."""

    done_s: float | None = None  # from t0 to the end of the first round of the steady run
    first_s: float | None = None  # from t0 until the first name gave the wanted answer
    rounds: int = 0
    queries: int = 0
    unanswered: int = 0  # poll queries without an answer within ROUND_TIMEOUT_S
    regressions: int = 0  # rounds that broke a run of all-wanted rounds
    timed_out: bool = False
    last_answers: dict[str, str] = dataclasses.field(default_factory=dict)


def rcode_text(answer: tuple[int, int] | None) -> str:
    """An answer as e.g. ``NOERROR/1`` (rcode/answer count), ``none`` if unanswered."""
    if answer is None:
        return "none"
    names = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
    return f"{names.get(answer[0], str(answer[0]))}/{answer[1]}"


def is_blocked(answer: tuple[int, int] | None) -> bool:
    """The order's action: NXDOMAIN."""
    return answer is not None and answer[0] == bd.RCODE_NXDOMAIN


def is_allowed(answer: tuple[int, int] | None) -> bool:
    """An allowed name from nsd: NOERROR with an address."""
    return answer is not None and answer[0] == bd.RCODE_NOERROR and answer[1] > 0


def ask_round(port: int, names: Sequence[str]) -> dict[str, tuple[int, int] | None]:
    """One query per name, each from its own fresh UDP socket (fresh source port), all
    sent at once; wait up to ROUND_TIMEOUT_S for the answers."""
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[str, int]] = {}
    answers: dict[str, tuple[int, int] | None] = dict.fromkeys(names)
    try:
        for name in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            qid = random.randrange(65536)
            try:
                sock.sendto(bd.build_query(name, qid), ("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            pending[sock] = (name, qid)
            sel.register(sock, selectors.EVENT_READ)
        end = time.monotonic() + ROUND_TIMEOUT_S
        while pending and (left := end - time.monotonic()) > 0:
            for key, _ev in sel.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    continue
                name, qid = pending[sock]
                if len(data) >= 12 and int.from_bytes(data[:2], "big") == qid:
                    answers[name] = (data[3] & 0x0F, int.from_bytes(data[6:8], "big"))
                    sel.unregister(sock)
                    sock.close()
                    del pending[sock]
    finally:
        for sock in pending:
            sock.close()
        sel.close()
    return answers


def watch(port: int, names: Sequence[str], wanted: str, t0: float) -> Watch:
    """Poll ``names`` every 5 ms until all give the ``wanted`` answer ("blocked" or
    "allowed") in every round for CONFIRM_S; times are seconds since ``t0``."""
    good = is_blocked if wanted == "blocked" else is_allowed
    w = Watch()
    steady_since: float | None = None  # end of the first round of the current good run
    while True:
        started = time.monotonic()
        if started - t0 > PHASE_TIMEOUT_S:
            w.timed_out = True
            return w
        answers = ask_round(port, names)
        ended = time.monotonic()
        w.rounds += 1
        w.queries += len(names)
        w.unanswered += sum(a is None for a in answers.values())
        w.last_answers = {n: rcode_text(a) for n, a in answers.items()}
        if w.first_s is None and any(good(a) for a in answers.values()):
            w.first_s = round(ended - t0, 4)
        if all(good(a) for a in answers.values()):
            if steady_since is None:
                steady_since = ended
            elif ended - steady_since >= CONFIRM_S:
                w.done_s = round(steady_since - t0, 4)
                return w
        elif steady_since is not None:
            w.regressions += 1
            steady_since = None
        time.sleep(max(0.0, started + POLL_INTERVAL_S - time.monotonic()))


def fresh_names(port: int, start: int, count: int) -> tuple[list[str], int, list[str]]:
    """``count`` allowed names from ``miss_name(start)`` on that answer NOERROR with an
    address through the gateway (which caches them); also the next index and rejects."""
    names: list[str] = []
    rejected: list[str] = []
    i = start
    while len(names) < count:
        if i >= bd.MISS_NAMES:
            raise RuntimeError("ran out of fresh allowed names in the zone")
        name = bd.miss_name(i)
        i += 1
        answer = bd.ask(port, name, timeout=2.0)
        if is_allowed(answer):
            names.append(name)
        else:
            rejected.append(f"{name} {rcode_text(answer)}")
    return names, i, rejected


# ------------------------------------------------------------------ gateway log


def parse_log(path: Path) -> list[dict[str, Any]]:
    """Compile/swap/ready lines and warnings/errors of the gateway's log, with their
    wall-clock time (epoch seconds; the log's local time, milliseconds)."""
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        m = LOG_LINE.match(line)
        if m is None:
            if events and events[-1]["level"] in ("ERROR", "CRITICAL", "WARNING"):
                events[-1].setdefault("more", []).append(line[:300])
            continue
        stamp, ms, proc, level, logger, message = m.groups()
        epoch = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
        event: dict[str, Any] = {
            "time": round(epoch, 3),
            "process": proc or "main",
            "level": level,
            "logger": logger,
            "message": message,
        }
        if c := COMPILED.search(message):
            event["kind"] = "compile"
            event["version"] = int(c.group(1))
            event["compile_s"] = float(c.group(3))
            if c.group(2) == "consolidated":
                event["mode"] = "consolidated"
            elif "overlay" in c.group(4):
                event["mode"] = "overlay"
            else:
                event["mode"] = "whole"
        elif s := SWAPPED.search(message):
            event["kind"] = "swap"
            event["version"] = int(s.group(1))
        elif "ready" in message:
            event["kind"] = "ready"
        elif level in ("WARNING", "ERROR", "CRITICAL"):
            event["kind"] = "problem"
        elif "policy" in message or "snapshot" in message:
            event["kind"] = "policy"
        else:
            continue
        events.append(event)
    return events


def store_version(work: Path) -> int | None:
    """The store's policy version (its log size), read-only; None if unreadable."""
    uri = f"{(work / 'clearwall.db').resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            row = db.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else None


def wait_quiet(proc: Any, work: Path) -> dict[str, Any]:
    """Wait until the gateway logged a whole compile (at start, or a consolidation after
    an overlay) of the store's current version (when its log says so at all) and then
    nothing for QUIET_S; at most QUIET_TIMEOUT_S. So every trial starts from a gateway
    with nothing pending, whose overlay compiler has usually been stopped (it lingers
    10 s): what is measured includes that compiler's start-up."""
    started = time.monotonic()
    end = started + QUIET_TIMEOUT_S
    want = store_version(work)
    while time.monotonic() < end:
        if not proc.alive():
            raise RuntimeError(f"gateway exited: {proc.tail()}")
        events = parse_log(proc.logfile)
        compiled = [
            e["version"] for e in events if e.get("kind") == "compile" and e["mode"] != "overlay"
        ]
        version_ok = not compiled or want is None or max(compiled) >= want
        idle = time.time() - proc.logfile.stat().st_mtime
        if version_ok and idle >= QUIET_S and time.monotonic() - started >= QUIET_S:
            return {"quiet_s": round(time.monotonic() - started, 2), "store_version": want}
        time.sleep(0.1)
    return {"quiet_s": None, "store_version": want, "timed_out": True}


# ------------------------------------------------------------------ load, memory


class Load:
    """dnsperf at a fixed rate over the hit names, stopped with SIGINT (it then prints
    its statistics; queries still outstanding are counted as interrupted, not lost)."""

    def __init__(self, port: int, queries: Path, out: Path, limit_s: float) -> None:
        """Start dnsperf on the client core for at most ``limit_s`` seconds."""
        self.out = out
        argv = ["taskset", "-c", bd.CLIENT_CORE, "dnsperf", "-s", "127.0.0.1",
                "-p", str(port), "-d", str(queries), "-l", str(int(limit_s)),
                "-Q", str(LOAD_QPS), "-c", str(LOAD_CLIENTS), "-q", str(LOAD_OUTSTANDING),
                "-t", str(LOAD_TIMEOUT_S)]  # fmt: skip
        with out.open("wb") as sink:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Stop dnsperf and return its figures."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=LOAD_TIMEOUT_S + 15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        text = self.out.read_text(errors="replace")
        res = bd.parse_dnsperf("hit-load", text)
        interrupted = re.search(r"Queries interrupted:\s+(\d+)", text)
        return {
            "qps_limit": LOAD_QPS,
            "duration_s": round(time.monotonic() - self.started, 1),
            "sent": res.sent,
            "completed": res.completed,
            "lost": res.lost,
            "interrupted": int(interrupted.group(1)) if interrupted else 0,
            "wall_qps": res.wall_qps,
            "avg_latency_ms": round(res.avg_latency_ms, 3),
            "max_latency_ms": round(res.max_latency_ms, 1),
            "rcodes": res.rcodes,
            "exit": self.popen.returncode,
        }


class MemorySampler:
    """Samples the RSS of a process tree every MEMORY_SAMPLE_S in a thread (peak)."""

    def __init__(self, pid: int) -> None:
        """Start sampling ``pid``'s tree."""
        self.pid = pid
        self.peak_rss = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_S):
            with contextlib.suppress(OSError, ValueError):
                self.peak_rss = max(self.peak_rss, bd.tree_memory(self.pid).rss)
                self.peak_processes = max(self.peak_processes, len(bd.process_tree(self.pid)))

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)


# ------------------------------------------------------------------ trials


@dataclasses.dataclass
class Gateway:
    """A running ``clearwall serve`` and how to talk to its store through the CLI."""

    proc: Any  # bench/dns.py's Proc
    work: Path
    cli: list[str]  # clearwall command
    common: list[str]  # --db/--config of its store
    authority: str


def cli(gw: Gateway, *args: str) -> tuple[str, float]:
    """Run a clearwall CLI command against the gateway's store: (stdout, seconds)."""
    started = time.monotonic()
    out = bd.run_checked([*gw.cli, *args, *gw.common], timeout=CLI_TIMEOUT_S, cwd=gw.work)
    return out.strip(), round(time.monotonic() - started, 3)


class Background:
    """A CLI command running in a thread while the harness watches the store and DNS."""

    def __init__(self, gw: Gateway, *args: str) -> None:
        self.finished = math.inf
        self._out: tuple[str, float] | BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(gw, args), daemon=True)
        self._thread.start()

    def _run(self, gw: Gateway, args: tuple[str, ...]) -> None:
        try:
            self._out = cli(gw, *args)
        except BaseException as exc:
            self._out = exc
        self.finished = time.monotonic()

    def result(self) -> tuple[str, float]:
        """The command's (stdout, seconds); re-raises its failure."""
        self._thread.join(CLI_TIMEOUT_S + 5)
        out = self._out
        if isinstance(out, BaseException):
            raise out
        if out is None:
            raise RuntimeError("the CLI command did not finish")
        return out


def wait_commit(work: Path, before: int | None) -> float:
    """The monotonic time at which the store's policy version first exceeded ``before``
    (polled every COMMIT_POLL_S): the moment the change was committed, give or take a
    millisecond, which is when the enforcement clock starts."""
    end = time.monotonic() + CLI_TIMEOUT_S
    while time.monotonic() < end:
        now = time.monotonic()
        version = store_version(work)
        if version is not None and before is not None and version > before:
            return now
        time.sleep(COMMIT_POLL_S)
    raise RuntimeError(f"the store's policy version did not pass {before}")


def find_authority(cw: list[str], common: list[str], work: Path) -> str:
    """Id of the benchmark's operator authority (the issuer of the big order)."""
    out = bd.run_checked([*cw, "authorities", "list", "--json", *common], cwd=work)
    data = json.loads(out)
    rows = data if isinstance(data, list) else data.get("authorities", [])
    for row in rows:
        if row.get("name") == "Benchmark operator":
            return str(row["id"])
    raise RuntimeError(f"no 'Benchmark operator' authority in: {out[:300]}")


def run_trial(gw: Gateway, index: int, label: str, next_name: int) -> tuple[dict[str, Any], int]:
    """One trial: block 10 fresh cached names with a new order, then revoke it."""
    trial: dict[str, Any] = {"trial": index + 1}
    names, next_name, rejected = fresh_names(PORT, next_name, NAMES_PER_TRIAL)
    trial["names"] = [names[0], names[-1]]  # first and last (consecutive mNNNNNN names)
    if rejected:
        trial["rejected_names"] = rejected
    rules = gw.work / f"trial-{index + 1}.domains.txt"
    rules.write_text("".join(n.rstrip(".") + "\n" for n in names))
    trial["wall_start"] = round(time.time(), 3)
    trial["version_before_add"] = store_version(gw.work)
    add = Background(
        gw, "orders", "add", "--authority", gw.authority,
        "--title", f"Hot swap {label} trial {index + 1}",
        "--legal-basis", "Operator security policy", "--reference", f"HOTSWAP-{label}-{index + 1}",
        "--category", "malware", "--action", "nxdomain", "--rules", str(rules),
        "--format", "domains",
    )  # fmt: skip
    t0 = wait_commit(gw.work, trial["version_before_add"])
    trial["wall_t0"] = round(time.time(), 3)
    enforce = watch(PORT, names, "blocked", t0)
    order, trial["cli_add_s"] = add.result()
    trial["cli_add_after_commit_s"] = round(add.finished - t0, 3)
    order_id = order.splitlines()[-1].strip()
    trial["order"] = order_id
    trial["version_after_add"] = store_version(gw.work)
    trial["enforce_s"] = enforce.done_s
    trial["enforce"] = dataclasses.asdict(enforce)
    if enforce.timed_out:
        log(f"{label} trial {index + 1}: NOT enforced after {PHASE_TIMEOUT_S:.0f} s")
    before_revoke = store_version(gw.work)
    revoke = Background(
        gw, "orders", "revoke", order_id, "--reason", "Hot swap benchmark: trial over"
    )
    t1 = wait_commit(gw.work, before_revoke)
    trial["wall_t1"] = round(time.time(), 3)
    unblock = watch(PORT, names, "allowed", t1)
    _out, trial["cli_revoke_s"] = revoke.result()
    trial["version_after_revoke"] = store_version(gw.work)
    trial["unblock_s"] = unblock.done_s
    trial["unblock"] = dataclasses.asdict(unblock)
    if unblock.timed_out:
        log(f"{label} trial {index + 1}: NOT unblocked after {PHASE_TIMEOUT_S:.0f} s")
    trial["quiet"] = wait_quiet(gw.proc, gw.work)
    trial["wall_end"] = round(time.time(), 3)
    log(
        f"{label} trial {index + 1}: add CLI {trial['cli_add_s']:.2f} s, enforced in "
        f"{fmt_s(enforce.done_s)}, revoke CLI {trial['cli_revoke_s']:.2f} s, unblocked in "
        f"{fmt_s(unblock.done_s)} (poll unanswered {enforce.unanswered}+{unblock.unanswered})"
    )
    return trial, next_name


def attach_events(trials: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """Give each trial the log events within its time span, timed from its t0 (add) or
    t1 (revoke)."""
    for trial in trials:
        mine = []
        for e in events:
            if trial["wall_start"] - 0.5 <= e["time"] <= trial["wall_end"] + 0.5:
                e = dict(e)
                after_revoke = e["time"] >= trial["wall_t1"]
                base = trial["wall_t1"] if after_revoke else trial["wall_t0"]
                e["phase"] = "revoke" if after_revoke else "add"
                e["since_cli_return_s"] = round(e["time"] - base, 3)
                mine.append(e)
        trial["log"] = mine
        trial["compiles_s"] = [e["compile_s"] for e in mine if e.get("kind") == "compile"]


def summarize(values: list[float | None]) -> dict[str, Any]:
    """Median and max of the measured values (timeouts left out, and counted)."""
    got = [v for v in values if v is not None]
    return {
        "median": round(statistics.median(got), 4) if got else None,
        "max": round(max(got), 4) if got else None,
        "timeouts": len(values) - len(got),
    }


def bench_workers(
    workers: int, ds: Any, run_dir: Path, args: argparse.Namespace, next_name: int
) -> tuple[dict[str, Any], int]:
    """Start a gateway with ``workers`` workers, run the trials against it, stop it."""
    label = f"x{workers}"
    result: dict[str, Any] = {"workers": workers, "trials": []}
    work = run_dir / f"clearwall-{workers}"
    work.mkdir()
    proc = None
    load: Load | None = None
    sampler: MemorySampler | None = None
    try:
        launch = bd.launch_clearwall(ds, work, PORT, bd.NSD_PORT, workers)
        result["store_setup_s"] = launch.setup_s
        result["version"] = launch.version
        argv = [*launch.argv, "--log-level", "INFO"]
        log(f"clearwall {label}: starting")
        proc = bd.Proc("clearwall", argv, work / "gateway.log", bd.SERVER_CORE)
        result["ready_s"] = round(bd.wait_ready(proc, PORT, bd.READY_TIMEOUT_S), 2)
        result["rss_ready_mib"] = bd.tree_memory(proc.pid).rss
        log(f"clearwall {label}: ready in {result['ready_s']} s, RSS {result['rss_ready_mib']}")
        cw = bd.clearwall_cmd()
        common = bd.clearwall_options(work, PORT, bd.NSD_PORT, workers)
        gw = Gateway(proc, work, cw, common, find_authority(cw, common, work))
        result["authority"] = gw.authority
        warm = bd.dnsperf(PORT, ds.queries("hit"), 30, once=True, edns=False)
        result["warm_answered"] = bd.parse_dnsperf("warm", warm).completed
        wait_quiet(proc, work)  # the start-up compile's compiler process settles
        result["memory_before"] = dataclasses.asdict(bd.tree_memory(proc.pid))
        result["store_version_start"] = store_version(work)
        sampler = MemorySampler(proc.pid)
        if args.load:
            limit = args.trials * (3 * PHASE_TIMEOUT_S + QUIET_TIMEOUT_S + 2 * CLI_TIMEOUT_S)
            load = Load(PORT, ds.queries("hit"), work / "dnsperf-load.out", limit + 60)
            time.sleep(1.0)  # the load runs before the first change
            cpu = bd.tree_cpu_seconds(proc.pid)
            time.sleep(LOAD_CPU_WINDOW_S)
            share = (bd.tree_cpu_seconds(proc.pid) - cpu) / LOAD_CPU_WINDOW_S
            result["load_cpu_share"] = round(share, 3)
            log(f"clearwall {label}: serving the load alone takes {share:.0%} of a core")
        for index in range(args.trials):
            if not proc.alive():
                raise RuntimeError(f"gateway exited: {proc.tail()}")
            trial, next_name = run_trial(gw, index, label, next_name)
            result["trials"].append(trial)
        if load is not None:
            time.sleep(1.0)
            result["load"] = load.stop()
            load = None
            log(f"clearwall {label}: load {result['load']}")
        sampler.stop()
        result["rss_peak_mib"] = sampler.peak_rss
        result["peak_processes"] = sampler.peak_processes
        result["memory_after"] = dataclasses.asdict(bd.tree_memory(proc.pid))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result["error"] = str(exc)[:600]
        log(f"clearwall {label}: FAILED: {result['error']}")
    finally:
        if load is not None:
            result["load"] = load.stop()
        if sampler is not None:
            sampler.stop()
        if proc is not None:
            proc.stop()
    if proc is not None:
        events = parse_log(proc.logfile)
        attach_events(result["trials"], events)
        result["compiles"] = [
            {k: e[k] for k in ("time", "version", "compile_s", "process")}
            for e in events
            if e.get("kind") == "compile"
        ]
        result["problems"] = [e for e in events if e["level"] in ("WARNING", "ERROR", "CRITICAL")]
        keep = args.cache_dir / "hot-swap-logs"
        keep.mkdir(parents=True, exist_ok=True)
        saved = keep / f"gateway-{workers}.log"
        shutil.copyfile(proc.logfile, saved)
        result["gateway_log"] = str(saved)
        if (work / "dnsperf-load.out").exists():
            shutil.copyfile(work / "dnsperf-load.out", keep / f"dnsperf-load-{workers}.out")
    trials = result["trials"]
    result["enforce_s"] = summarize([t["enforce_s"] for t in trials])
    result["unblock_s"] = summarize([t["unblock_s"] for t in trials])
    result["cli_add_s"] = summarize([t["cli_add_s"] for t in trials])
    result["cli_revoke_s"] = summarize([t["cli_revoke_s"] for t in trials])
    return result, next_name


# ------------------------------------------------------------------ report


def fmt_s(value: float | None) -> str:
    """Seconds as 0.123, or ``timeout``."""
    return f"{value:.3f}" if value is not None else "timeout"


def fmt_list(values: list[float | None]) -> str:
    """Seconds of each trial, space-separated."""
    return " ".join(fmt_s(v) for v in values) or "—"


def rows(report: dict[str, Any]) -> list[list[str]]:
    """One summary row per worker count."""
    out = []
    for r in report["runs"]:
        trials = r["trials"]
        load = r.get("load") or {}
        before = (r.get("memory_before") or {}).get("rss")
        after = (r.get("memory_after") or {}).get("rss")
        compiles = [c["compile_s"] for c in r.get("compiles", [])]
        out.append(
            [
                f"clearwall ×{r['workers']}",
                fmt_list([t["enforce_s"] for t in trials]),
                f"{fmt_s(r['enforce_s']['median'])} / {fmt_s(r['enforce_s']['max'])}",
                fmt_list([t["unblock_s"] for t in trials]),
                f"{fmt_s(r['unblock_s']['median'])} / {fmt_s(r['unblock_s']['max'])}",
                f"{fmt_s(r['cli_add_s']['median'])} / {fmt_s(r['cli_revoke_s']['median'])}",
                f"{load['sent']:,}/{load['completed']:,}/{load['lost']}" if load else "off",
                f"{r['load_cpu_share']:.0%}" if "load_cpu_share" in r else "—",
                str(sum(t["enforce"]["unanswered"] + t["unblock"]["unanswered"] for t in trials)),
                f"{before or 0:,.0f} / {r.get('rss_peak_mib', 0):,.0f} / {after or 0:,.0f}",
                " ".join(f"{c:.1f}" for c in compiles) or "—",
                (r.get("error") or "")[:60],
            ]
        )
    return out


HEADERS = (
    "gateway",
    "enforce s (each)",
    "enforce med/max",
    "unblock s (each)",
    "unblock med/max",
    "CLI add/revoke s",
    "load sent/done/lost",
    "load CPU",
    "poll unanswered",
    "RSS MiB before/peak/after",
    "compiles logged s",
    "error",
)


def print_table(report: dict[str, Any]) -> None:
    """The summary with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(220, shutil.get_terminal_size().columns))
    meta = report["meta"]
    table = Table(
        title=f"Hot swap: {meta['rules']:,} rules, {meta['trials']} trials, "
        f"{NAMES_PER_TRIAL} cached names per change, load {meta['load']}"
    )
    for col in HEADERS:
        table.add_column(col, justify="left" if col in ("gateway", "error") else "right")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(f"command: {meta['command']}")
    source = meta.get("source", {})
    console.print(
        f"commit {meta['commit']}, clearwall from {source.get('package', '?')}"
        + (f"; src/ differs from HEAD: {len(source['src_changes_vs_head'])} files"
           if source.get("src_changes_vs_head") else "")
    )  # fmt: skip
    console.print(
        "load CPU: the gateway's CPU share of a core serving the load alone (3 s before "
        "the first change); the compiler shares that core (core 0)"
    )


def markdown(report: dict[str, Any]) -> str:
    """The summary as a Markdown table."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|---|" + "--:|" * (len(HEADERS) - 2) + "---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    return "\n".join(lines)


def source_info() -> dict[str, Any]:
    """Which clearwall source the run measures: the package directory the venv imports
    (``PYTHONPATH`` may point it at another tree, e.g. a ``git archive`` of a commit) and,
    when that is this checkout's ``src/``, the files there that differ from HEAD."""
    info: dict[str, Any] = {"pythonpath": os.environ.get("PYTHONPATH", "")}
    with contextlib.suppress(RuntimeError):
        code = "import clearwall, os; print(os.path.dirname(os.path.abspath(clearwall.__file__)))"
        info["package"] = bd.run_checked([sys.executable, "-c", code], timeout=60).strip()
    if info.get("package", "").startswith(str(ROOT / "src")):
        with contextlib.suppress(RuntimeError):
            status = bd.run_checked(
                ["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--",
                 "src"], timeout=30,
            )  # fmt: skip
            info["src_changes_vs_head"] = [line[3:] for line in status.splitlines()]
    return info


def build_report(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The JSON document."""
    return {
        "meta": {
            "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "command": args.command_line,
            "commit": bd.git_head(),
            "source": getattr(args, "source", {}),
            "rules": args.rules,
            "trials": args.trials,
            "workers": args.worker_list,
            "load": f"dnsperf hit -Q {LOAD_QPS} -c {LOAD_CLIENTS} -q {LOAD_OUTSTANDING} "
            f"-t {LOAD_TIMEOUT_S}"
            if args.load
            else "off",
            "names_per_trial": NAMES_PER_TRIAL,
            "poll_interval_s": POLL_INTERVAL_S,
            "confirm_s": CONFIRM_S,
            "phase_timeout_s": PHASE_TIMEOUT_S,
            "cpus": os.cpu_count(),
            "server_core": bd.SERVER_CORE,
            "client_core": bd.CLIENT_CORE,
            "kernel": os.uname().release,
            "isolated_netns": args.in_netns,
            "loadavg_start": [round(x, 2) for x in getattr(args, "loadavg_start", ())],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "definitions": {
                "enforce_s": "from the commit of `clearwall orders add` (the store's "
                "version grew) until every name answered NXDOMAIN in one poll round, "
                "steadily for confirm_s",
                "unblock_s": "from the commit of `clearwall orders revoke` until every "
                "name answered NOERROR with an address, steadily for confirm_s",
                "poll unanswered": "poll queries with no answer within 0.5 s",
            },
        },
        "runs": runs,
    }


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0]
        + " Each trial publishes a 10-name order through the CLI and times until the gateway"
        " answers NXDOMAIN for all of them (enforce_s), then revokes it and times until they"
        " resolve again (unblock_s), under optional dnsperf load.",
    )
    p.add_argument("--rules", type=int, default=None, help="size of the big policy (1000000)")
    p.add_argument("--trials", type=int, default=None, help="changes per worker count (5)")
    p.add_argument("--workers", default="1,2", help="clearwall worker counts to run (1,2)")
    p.add_argument(
        "--load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"run dnsperf (hit names, {LOAD_QPS} q/s) during the trials (on)",
    )
    p.add_argument("--quick", action="store_true", help="100k rules, 2 trials: proves the harness")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=bd.DEFAULT_CACHE,
        help="generated data, kept between runs (also the gateways' logs of the last run)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="JSON result file")
    bd.add_run_options(p)
    args = p.parse_args(argv)
    args.rules = args.rules or (100_000 if args.quick else 1_000_000)
    args.trials = args.trials or (2 if args.quick else 5)
    args.command_line = args.command_line or " ".join(["bench/hot_swap.py", *argv])
    args.worker_list = [int(w) for w in args.workers.split(",") if w.strip()]
    if not args.worker_list or min(args.worker_list) < 1 or args.trials < 1:
        p.error("--workers needs counts >= 1 and --trials >= 1")
    args.output = args.output.resolve()
    args.cache_dir = args.cache_dir.resolve()
    return args


def run(args: argparse.Namespace) -> int:
    """Generate data, start nsd, run the trials for every worker count, report."""
    missing = [t for t in ("dnsperf", "taskset", "nsd") if shutil.which(t) is None]
    if missing:
        log(f"missing tools: {', '.join(missing)} (run scripts/install-bench-deps.sh)")
        return 2
    if not bd.clearwall_has_serve():
        log("clearwall serve is not in this checkout")
        return 2
    with contextlib.suppress(OSError, ValueError):  # keep the harness and CLI off core 0
        os.sched_setaffinity(0, {int(bd.CLIENT_CORE)})
    args.source = source_info()
    if args.source.get("src_changes_vs_head"):
        log(f"note: src/ differs from HEAD: {' '.join(args.source['src_changes_vs_head'])}")
    ds = bd.prepare_dataset(args.cache_dir, args.rules)
    args.loadavg_start = os.getloadavg()
    runs: list[dict[str, Any]] = []
    next_name = 0
    with tempfile.TemporaryDirectory(prefix="clearwall-hot-swap-") as tmp:
        run_dir = Path(tmp)
        nsd = bd.start_nsd(ds, run_dir)
        try:
            for workers in args.worker_list:
                result, next_name = bench_workers(workers, ds, run_dir, args, next_name)
                runs.append(result)
        finally:
            nsd.stop()
    report = build_report(runs, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    if args.markdown:
        print(markdown(report))
    log(f"wrote {args.output}")
    return 1 if any(r.get("error") for r in runs) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: install deps, isolate, run (as bench/dns.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return bd.launch(argv, parse_args(argv), run, Path(__file__))


if __name__ == "__main__":
    sys.exit(main())
