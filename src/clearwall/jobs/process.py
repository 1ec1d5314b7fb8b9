"""The jobs' own process beside the gateway: started by ``clearwall serve``, dies with it.

The DNS processes stay lean (no SQLAlchemy, no HTTP client): ``serve`` starts
``python -m clearwall.jobs`` with what it decided (the config file, its overrides, the
store). That process only keeps time (``schedule.run_schedule``: the standard library and
the config, about 15 MiB): each batch of due jobs runs in a child of its own
(``--once``), which opens the store, runs them and exits, so the database layer and the
HTTP client (about 45 MiB more) are held for the second a run takes, not between runs,
at the price of that child's start-up (about 0.3 s of CPU a minute with the default
upkeep interval). Both die with their parent (the parent-death signal,
``dnsserver.lifeline``). This module imports only the standard library, so the gateway
pays nothing for it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clearwall.config import Config

log = logging.getLogger("clearwall.jobs")

LOG_FORMAT = "%(asctime)s jobs %(levelname)s %(name)s: %(message)s"
# The jobs are background work (expiry entries, refreshes, witness retries, each due
# within seconds): at a lower priority they never take the CPU from the DNS processes,
# and their start-up (an interpreter and SQLAlchemy, as the gateway becomes ready) does
# not delay the gateway's first answers on a busy or single core.
NICE = 10


@dataclass
class JobsProcess:
    """The jobs child of a gateway serving ``store_url``."""

    store_url: str
    config_path: Path | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    log_level: int = logging.INFO
    proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """The command line of the child."""
        spec = {
            "store_url": self.store_url,
            "config_path": None if self.config_path is None else str(self.config_path),
            "overrides": self.overrides,
            "log_level": self.log_level,
        }
        return [
            *(sys.executable, "-m", "clearwall.jobs"),
            *("--parent", str(os.getpid()), json.dumps(spec)),
        ]

    def start(self) -> None:
        """Start the child (from a thread that lives as long as the process: the
        parent-death signal follows the thread that started it)."""
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL)
        log.info(
            "jobs (order expiry, subscription refresh, witnesses) in process %d", self.proc.pid
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop (SIGTERM) and wait for it; kill it if it will not."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``proc`` and wait for it; kill it if it has not exited after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run_once(names: list[str], config: Config, store_url: str) -> int:
    """``--once``: open the store, run the named jobs (each failure logged, the others
    run), exit."""
    from clearwall.errors import ClearwallError
    from clearwall.jobs.runner import Jobs, run_logged

    try:
        jobs = Jobs.open(config, store_url)
    except ClearwallError as exc:
        print(f"clearwall jobs: error: {exc}", file=sys.stderr)
        return 1
    try:
        for name in names:
            run_logged(jobs, name)
    finally:
        jobs.service.store.dispose()
    return 0


def _spawner(spec_json: str, stop: threading.Event) -> Callable[[Sequence[str]], None]:
    """What the scheduler calls with each batch of due jobs: a ``--once`` child, waited
    for (and stopped with the scheduler)."""

    def run(names: Sequence[str]) -> None:
        argv = [sys.executable, "-m", "clearwall.jobs", "--once", ",".join(names), spec_json]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            if stop.wait(0.1):
                stop_process(proc)
                return
        if proc.returncode != 0:
            log.warning("jobs %s: the run exited with status %d", ",".join(names), proc.returncode)

    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m clearwall.jobs --parent PID SPEC``: keep the jobs' time until SIGTERM,
    running each batch due as ``python -m clearwall.jobs --once NAMES SPEC``."""
    import signal

    from clearwall.config import load_config
    from clearwall.dnsserver.lifeline import die_with_parent
    from clearwall.errors import ClearwallError
    from clearwall.jobs.schedule import run_schedule

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("--parent", "--once"):
        print(
            "usage: python -m clearwall.jobs --parent PID SPEC | --once NAMES SPEC", file=sys.stderr
        )
        return 2
    die_with_parent(int(args[1]) if args[0] == "--parent" else os.getppid())
    if args[0] == "--parent":
        os.nice(NICE)  # a --once run inherits it
    spec = json.loads(args[2])
    logging.basicConfig(level=int(spec["log_level"]), format=LOG_FORMAT)
    # httpx says each request at INFO: a mirror's checkpoint fetch every interval would
    # fill the jobs' log; the jobs say what matters (a refusal, a failure) themselves.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, int(spec["log_level"])))
    # SIGINT reaches the whole process group: the gateway (or, for a run, the scheduler)
    # decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path = Path(spec["config_path"]) if spec["config_path"] else None
        config = load_config(path, spec["overrides"])
    except ClearwallError as exc:
        print(f"clearwall jobs: error: {exc}", file=sys.stderr)
        return 1
    if args[0] == "--once":
        return _run_once(args[1].split(","), config, spec["store_url"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_schedule(config, _spawner(args[2], stop), stop)
    return 0
