"""The control plane: poll the store's policy version, compile off the data path, swap.

A new snapshot is compiled in a warm child process (``Compiler``) that writes it to a
fresh directory; the data plane
then mmap-loads that directory (cheap) and swaps it in with one assignment, so queries
never wait for a compile and in-flight queries finish on the snapshot they started with.
Old snapshot directories are removed once two newer ones exist.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.dnsserver.policy import PolicyView
from clearwall.errors import SnapshotError

if TYPE_CHECKING:
    from clearwall.store.db import Store

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 2


def load_snapshot(path: Path) -> PolicyView:
    """mmap-load a compiled snapshot directory."""
    from clearwall.policy.snapshot import PolicySnapshot

    return PolicySnapshot.load(path)


def compile_to(store_url: str, base_url: str, out: Path) -> None:
    """Compile the store's enforceable policy and save it at ``out`` (runs in the child)."""
    from clearwall.store.db import open_store
    from clearwall.store.loader import build_snapshot

    store = open_store(store_url)
    try:
        build_snapshot(store, base_url).save(out)
    finally:
        store.engine.dispose()


def _compiler_loop(conn: multiprocessing.connection.Connection) -> None:
    """The warm compiler process: imports done once, then one compile per request."""
    import clearwall.policy.snapshot
    import clearwall.store.loader  # noqa: F401

    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        store_url, base_url, out = request
        conn.send(_compile_in_fork(store_url, base_url, out))


def _compile_in_fork(store_url: str, base_url: str, out: str) -> tuple[str, str]:
    """Compile in a forked child that exits afterwards: the memory a big compile takes
    goes back to the system at once instead of staying in the warm process."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without running any cleanup
        os.close(read_end)
        status = 1
        try:
            compile_to(store_url, base_url, Path(out))
            message, status = b"ok", 0
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}".encode()[:4000]
        try:
            os.write(write_end, message)
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    message = b"".join(chunks)
    if status == 0 and message == b"ok":
        return "ok", out
    return "error", message.decode(errors="replace") or f"compiler exited with {status}"


class Compiler:
    """A warm child process that compiles snapshots, so a policy change costs only the
    compile itself (no interpreter start-up) and never the data plane's CPU or GIL.

    The warm process holds only imports; each compile runs in a child it forks, so the
    memory of compiling a million rules is released as soon as the snapshot is saved.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_compiler_loop, args=(child,), daemon=True, name="clearwall-policy-compiler"
        )
        self._proc.start()
        child.close()
        self._lock = threading.Lock()

    def compile(self, store_url: str, base_url: str, out: Path) -> Path:
        """Compile into ``out`` (blocking); raise SnapshotError on failure."""
        with self._lock:
            if not self._proc.is_alive():
                raise SnapshotError("the policy compiler process died")
            self._conn.send((store_url, base_url, str(out)))
            status, value = self._conn.recv()
        if status != "ok":
            raise SnapshotError(f"snapshot compile failed: {value}")
        return out

    def close(self) -> None:
        """Stop the child."""
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(2)
        if self._proc.is_alive():
            self._proc.terminate()


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
        self._compiler: Compiler | None = None
        self._store: Store | None = None

    def store_version(self) -> int:
        """The store's policy version (log size): one cheap query on a kept-open store."""
        from clearwall.store.db import open_store
        from clearwall.store.loader import policy_version

        if self._store is None:
            self._store = open_store(self.store_url)
        return policy_version(self._store)

    def compile_now(self) -> Path:
        """Compile the current policy (blocking) and return its directory."""
        version = self.store_version()
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"policy-{version}-{time.time_ns()}"
        started = time.monotonic()
        if self._compiler is None:
            self._compiler = Compiler()
        self._compiler.compile(self.store_url, self.base_url, out)
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
        if self._compiler is not None:
            self._compiler.close()
        if self._store is not None:
            self._store.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.store_version() == self.version:
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
