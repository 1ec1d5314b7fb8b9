"""The jobs beside the gateway: their schedule kept by a thread of ``clearwall serve``'s
process, each batch of due jobs run by a short-lived child process.

The DNS processes stay lean (no SQLAlchemy, no HTTP client): the thread only keeps time
(``schedule.run_schedule``: a wait on an event between batches, nothing loaded), and
each batch due runs as ``python -m clearwall.jobs --once NAMES SPEC``, which opens the
store, runs them and exits, so the database layer and the HTTP client (about 45 MiB)
are held for the second a run takes, never between runs. A process of its own keeping
time held 16 MiB for that (an interpreter and the config); the price of a child per
batch is its start-up (about 0.3 s of CPU a minute with the default upkeep interval).
A run is niced (``NICE``) and dies with the gateway (the parent-death signal,
``dnsserver.lifeline``, armed against the scheduler thread, which lives as long as the
schedule). This module imports only the standard library, so the gateway pays nothing
for it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
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
class JobsSchedule:
    """The jobs of a gateway serving ``store_url``: ``config``'s schedule, kept by a
    thread of this process, each batch due run as a ``--once`` child."""

    config: Config
    store_url: str
    config_path: Path | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    log_level: int = logging.INFO
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def spec(self) -> str:
        """What a run is told (JSON): the config file, its overrides, the store."""
        return json.dumps(
            {
                "store_url": self.store_url,
                "config_path": None if self.config_path is None else str(self.config_path),
                "overrides": self.overrides,
                "log_level": self.log_level,
            }
        )

    def argv(self, names: Sequence[str]) -> list[str]:
        """The command line of the run of ``names``."""
        return [sys.executable, "-m", "clearwall.jobs", "--once", ",".join(names), self.spec()]

    def start(self) -> None:
        """Start keeping time (in a daemon thread; the first batch is due at once)."""
        from clearwall.jobs.schedule import run_schedule

        def keep_time() -> None:
            # On Linux a nice value belongs to a thread, and a child starts with its
            # forking thread's: this thread, which only waits, is niced, so each run is
            # from its first instruction (its interpreter's start-up included).
            os.nice(NICE)
            run_schedule(self.config, self._run, self._stop)

        self._thread = threading.Thread(target=keep_time, name="clearwall-jobs", daemon=True)
        self._thread.start()
        log.info(
            "jobs (order expiry, subscription refresh, witnesses) on their schedule, "
            "each batch in a child process at nice +%d",
            NICE,
        )

    def _run(self, names: Sequence[str]) -> None:
        """Run one batch in a child and wait for it (stopped with the schedule)."""
        proc = subprocess.Popen(self.argv(names), stdin=subprocess.DEVNULL)
        while proc.poll() is None:
            if self._stop.wait(0.1):
                stop_process(proc)
                return
        if proc.returncode != 0:
            log.warning("jobs %s: the run exited with status %d", ",".join(names), proc.returncode)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the schedule: a run under way is asked to stop (SIGTERM), then killed if
        it will not within ``timeout``."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout + 1.0)


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


def main(argv: list[str] | None = None) -> int:
    """``python -m clearwall.jobs --once NAMES SPEC``: run the named jobs (comma-separated)
    on the store and config SPEC names, then exit."""
    import signal

    from clearwall.config import load_config
    from clearwall.dnsserver.lifeline import die_with_parent
    from clearwall.errors import ClearwallError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "--once":
        print("usage: python -m clearwall.jobs --once NAMES SPEC", file=sys.stderr)
        return 2
    die_with_parent(os.getppid())  # started niced by the gateway's scheduler thread
    spec = json.loads(args[2])
    logging.basicConfig(level=int(spec["log_level"]), format=LOG_FORMAT)
    # httpx says each request at INFO: a mirror's checkpoint fetch every interval would
    # fill the jobs' log; the jobs say what matters (a refusal, a failure) themselves.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, int(spec["log_level"])))
    # SIGINT reaches the whole process group: the gateway decides when a run stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path = Path(spec["config_path"]) if spec["config_path"] else None
        config = load_config(path, spec["overrides"])
    except ClearwallError as exc:
        print(f"clearwall jobs: error: {exc}", file=sys.stderr)
        return 1
    return _run_once(args[1].split(","), config, spec["store_url"])
