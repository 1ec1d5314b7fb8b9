"""The control plane: poll the store's policy version, compile off the data path, swap.

A new snapshot is compiled in a child process (``python -m
clearwall.dnsserver.policy_source``) that writes it to a fresh directory; the data plane
then mmap-loads that directory (cheap) and swaps it in with one assignment, so queries
never wait for a compile and in-flight queries finish on the snapshot they started with.
Old snapshot directories are removed once two newer ones exist.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from clearwall.dnsserver.policy import PolicyView
from clearwall.errors import SnapshotError

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 2


def load_snapshot(path: Path) -> PolicyView:
    """mmap-load a compiled snapshot directory."""
    from clearwall.policy.snapshot import PolicySnapshot

    return PolicySnapshot.load(path)


def store_version(store_url: str) -> int:
    """The store's current policy version (log size); opens the store each time."""
    from clearwall.store.db import open_store
    from clearwall.store.loader import policy_version

    store = open_store(store_url)
    try:
        return policy_version(store)
    finally:
        store.engine.dispose()


def compile_to(store_url: str, base_url: str, out: Path) -> None:
    """Compile the store's enforceable policy and save it at ``out`` (runs in the child)."""
    from clearwall.store.db import open_store
    from clearwall.store.loader import build_snapshot

    store = open_store(store_url)
    try:
        build_snapshot(store, base_url).save(out)
    finally:
        store.engine.dispose()


def compile_in_child(store_url: str, base_url: str, out: Path, timeout: float = 3600) -> Path:
    """Run ``compile_to`` in a child process so the data plane keeps its CPU and GIL."""
    cmd = [
        sys.executable,
        "-m",
        "clearwall.dnsserver.policy_source",
        "--db",
        store_url,
        "--base-url",
        base_url,
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SnapshotError(f"snapshot compile failed: {proc.stderr.strip()[-500:]}")
    return out


class PolicySource:
    """Watches the store and publishes new snapshot directories to ``publish(path)``.

    ``publish`` is called from the watcher thread; the data plane hops to its own loop.
    """

    def __init__(
        self,
        store_url: str,
        base_url: str,
        directory: Path,
        interval: float,
        publish: Callable[[Path], object],
    ) -> None:
        self.store_url = store_url
        self.base_url = base_url
        self.directory = directory
        self.interval = interval
        self.publish = publish
        self.version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published: list[Path] = []

    def compile_now(self) -> Path:
        """Compile the current policy (blocking) and return its directory."""
        version = store_version(self.store_url)
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"policy-{version}-{time.time_ns()}"
        started = time.monotonic()
        compile_in_child(self.store_url, self.base_url, out)
        log.info("policy version %d compiled in %.2fs", version, time.monotonic() - started)
        self.version = version
        self._published.append(out)
        self._prune()
        return out

    def _prune(self) -> None:
        while len(self._published) > KEEP_SNAPSHOTS + 1:
            old = self._published.pop(0)
            shutil.rmtree(old, ignore_errors=True)

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="policy-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if store_version(self.store_url) == self.version:
                    continue
                path = self.compile_now()
                self.publish(path)
            except Exception as exc:  # keep enforcing the last good policy
                log.error("policy reload failed, keeping version %s: %s", self.version, exc)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: compile one snapshot."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url", default="")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    compile_to(args.db, args.base_url, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
