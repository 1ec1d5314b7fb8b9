"""The control plane: poll the store's policy version, compile off the data path, swap.

A new snapshot is compiled in a child process (``Compiler``, started on demand and
stopped when changes stop coming) that writes it to a fresh directory; the data plane
then mmap-loads that directory (cheap) and swaps it in with one assignment, so queries
never wait for a compile and in-flight queries finish on the snapshot they started
with. Old snapshot directories are removed once two newer ones exist. A SQLite store's
version is polled with the standard library, so the gateway never imports SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.dnsserver.policy import PolicyView
from clearwall.errors import ClearwallError, SnapshotError

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


def _compile_in_fork(store_url: str, base_url: str, out: str) -> tuple[str, str]:
    """Compile in a forked child that exits afterwards: the memory a big compile takes
    goes back to the system at once instead of staying in the compiler process."""
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


def _compiler_loop() -> int:
    """The compiler process: imports done once, then one compile per JSON line on stdin
    (answered by one JSON line on stdout) until stdin closes."""
    import clearwall.policy.snapshot
    import clearwall.store.loader  # noqa: F401

    for line in sys.stdin:
        store_url, base_url, out = json.loads(line)
        print(json.dumps(_compile_in_fork(store_url, base_url, out)), flush=True)
    return 0


class Compiler:
    """A compiler process started when a compile is needed and kept only while changes
    keep coming (``linger`` seconds after the last compile), then stopped.

    Changes come in bursts (an operator edits several orders): the burst pays the
    interpreter and SQLAlchemy start-up once (about 0.5-0.9 s here) and each later change
    only its compile, within the 1 s enforcement target; a change after ``linger`` quiet
    seconds pays the start-up again. In exchange an idle gateway holds no compiler (about
    45 MiB), and a plain subprocess needs no multiprocessing resource tracker (~12 MiB).
    """

    def __init__(self, linger: float = 10.0) -> None:
        self.linger = linger
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._last = 0.0

    def _process(self) -> subprocess.Popen[str]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            argv = [sys.executable, "-m", "clearwall.dnsserver.policy_source", "--serve"]
            proc = self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        return proc

    def compile(self, store_url: str, base_url: str, out: Path) -> Path:
        """Compile into ``out`` (blocking); raise SnapshotError on failure."""
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps([store_url, base_url, str(out)]) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except OSError as exc:
                raise SnapshotError(f"the policy compiler process failed: {exc}") from exc
            self._last = time.monotonic()
        if not line:
            raise SnapshotError("the policy compiler process died")
        status, value = json.loads(line)
        if status != "ok":
            raise SnapshotError(f"snapshot compile failed: {value}")
        return out

    def inherited_fds(self) -> tuple[int, ...]:
        """Our ends of the compiler's pipes (a forked child must close them)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            return ()
        return (proc.stdin.fileno(), proc.stdout.fileno())

    def expire(self) -> None:
        """Stop the compiler process when no compile asked for it for ``linger`` seconds."""
        if self._proc is not None and time.monotonic() - self._last > self.linger:
            self.close()

    def close(self) -> None:
        """Stop the compiler process (a later compile starts a new one)."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _sqlite_file(store_url: str) -> Path | None:
    """The database file of a plain ``sqlite:///path`` store URL, else None."""
    prefix = "sqlite:///"
    if not store_url.startswith(prefix) or "?" in store_url:
        return None
    path = store_url[len(prefix) :]
    return Path(path) if path and path != ":memory:" else None


def default_snapshot_dir(store_url: str) -> Path:
    """Where a gateway keeps the snapshots it compiles from ``store_url`` unless told:
    a ``snapshots`` directory beside a SQLite store's file, else ``var/snapshots``."""
    path = _sqlite_file(store_url)
    return path.parent / "snapshots" if path is not None else Path("var/snapshots")


def _sqlite_log_size(store_url: str) -> int | None:
    """The log size of a SQLite store read with the standard library, or None to ask
    the store itself (other databases, or anything unexpected: it explains errors)."""
    path = _sqlite_file(store_url)
    if path is None or not path.is_file():
        return None
    try:
        uri = f"{path.resolve().as_uri()}?mode=ro"  # the default store URL is relative
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else 0


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

    def inherited_fds(self) -> tuple[int, ...]:
        """File descriptors a process forked from this one must close (compiler pipes)."""
        return self._compiler.inherited_fds() if self._compiler is not None else ()

    def store_version(self) -> int:
        """The store's policy version (log size): one cheap query."""
        size = _sqlite_log_size(self.store_url) if self._store is None else None
        if size is not None:
            return size
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
        """Stop polling and remove the snapshots this source compiled (the gateway that
        mapped them is stopping; each start compiles afresh, so none would be reused)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._compiler is not None:
            self._compiler.close()
        if self._store is not None:
            self._store.engine.dispose()
        for path in self._published:
            shutil.rmtree(path, ignore_errors=True)
        self._published.clear()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._compiler is not None:
                self._compiler.expire()
            try:
                if self.store_version() == self.version:
                    continue
                path = self.compile_now()
                self.publish(path)
            except Exception as exc:  # keep enforcing the last good policy
                log.error("policy reload failed, keeping version %s: %s", self.version, exc)


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: compile one snapshot."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="compile requests from stdin")
    parser.add_argument("--db")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.serve:
        return _compiler_loop()
    if args.db is None or args.out is None:
        parser.error("--db and --out are required")
    try:
        compile_to(args.db, args.base_url, args.out)
    except ClearwallError as exc:
        print(f"{exc}", file=sys.stderr)  # the parent reports the last line
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
