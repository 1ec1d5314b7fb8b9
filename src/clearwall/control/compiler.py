"""The policy compiler: a child process that publishes the log and compiles snapshots,
one per JSON-line request, each in a fork of its own.

The gateway's ``PolicySource`` asks a ``Compiler`` for each snapshot; the compiler
process (``python -m clearwall.control.compiler``) pays the interpreter and SQLAlchemy
start-up once per burst of changes, and compiles each request in a forked child so the
memory a big compile takes goes back to the system at once. Nothing is enforced that
the public log does not show: each compile first publishes every committed log entry
(``TransparencyLog.publish``) and compiles at the size of the published checkpoint.

The protocol, one JSON line each way: a ``CompileRequest`` (``to_json``), the answer
``["ok", out]`` or ``["error", message]``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearwall.config import LedgerConfig
from clearwall.dnsserver.lifeline import die_with_parent
from clearwall.errors import ClearwallError, SnapshotError


@dataclass(frozen=True)
class CompileRequest:
    """One compile: the store's policy, whole or as an overlay, saved at ``out``.

    ``base``/``since``: compile only the orders changed since tree size ``since``, as an
    overlay over the whole snapshot saved at ``base``. ``ledger``: where the log is
    published first (default: the store's own, ``clearwall.layout``). ``parallel``: the
    rules digests of a whole compile are checked in a second process
    (``loader.build_snapshot_proven``). ``keytable_from``: see ``policy.compiler.build``.
    """

    store_url: str
    base_url: str
    out: Path
    base: Path | None = None
    since: int = 0
    ledger: LedgerConfig | None = None
    parallel: bool = False
    keytable_from: int | None = None

    def to_json(self) -> str:
        """The request as the compiler process reads it: one JSON object, one line."""
        ledger = self.ledger
        return json.dumps(
            {
                "store_url": self.store_url,
                "base_url": self.base_url,
                "out": str(self.out),
                "base": None if self.base is None else str(self.base),
                "since": self.since,
                "ledger": None if ledger is None else ledger.to_request(),
                "parallel": self.parallel,
                "keytable_from": self.keytable_from,
            }
        )

    @classmethod
    def from_json(cls, line: str) -> CompileRequest:
        """The request ``to_json`` wrote."""
        data: dict[str, Any] = json.loads(line)
        ledger = data["ledger"]
        return cls(
            store_url=data["store_url"],
            base_url=data["base_url"],
            out=Path(data["out"]),
            base=None if data["base"] is None else Path(data["base"]),
            since=int(data["since"]),
            ledger=None if ledger is None else LedgerConfig.from_request(ledger),
            parallel=bool(data["parallel"]),
            keytable_from=data["keytable_from"],
        )


def compile_to(request: CompileRequest) -> None:
    """Publish the store's log, then compile its enforceable policy as the published
    checkpoint states it and save it at ``request.out`` (runs in the child). A whole
    snapshot is saved with its provenance (``loader.save_proven``: a later start may
    reuse it)."""
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.log import TransparencyLog
    from clearwall.store.db import open_store
    from clearwall.store.loader import build_overlay, build_snapshot_proven, save_proven

    store_url, base_url, out, base = request.store_url, request.base_url, request.out, request.base
    store = open_store(store_url)
    try:
        try:
            ledger = resolve_ledger(request.ledger or LedgerConfig(), store_url)
            tlog = TransparencyLog(store, ledger)
            size = tlog.publish()
        except ClearwallError as exc:
            raise SnapshotError(
                f"the log cannot be published, so nothing it does not show is enforced: {exc}"
            ) from exc
        if base is None:
            proven = build_snapshot_proven(
                store,
                base_url,
                parallel=request.parallel,
                size=size,
                keytable_from=request.keytable_from,
            )
            save_proven(*proven, out)
        else:
            from clearwall.policy.layered import save_overlay
            from clearwall.policy.snapshotfile import saved_jurisdictions

            # The jurisdictions in force at the base, so only the new entries are read.
            overlay, masked = build_overlay(
                store,
                request.since,
                base_url,
                base_jurisdictions=saved_jurisdictions(base),
                size=size,
            )
            save_overlay(overlay, out, base, masked)
    finally:
        store.engine.dispose()


def _compile_in_fork(request: CompileRequest) -> tuple[str, str]:
    """Compile in a forked child that exits afterwards: the memory a big compile takes
    goes back to the system at once instead of staying in the compiler process."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without running any cleanup
        # No cyclic garbage collection: the child exits after this one compile (its
        # memory goes back at once), and the collector's passes over the million rows'
        # tuples it reads cost about 0.1 s of a 1M-rule first start.
        gc.disable()
        die_with_parent(parent)  # a killed compiler process takes its compile along
        os.close(read_end)
        status = 1
        try:
            compile_to(request)
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
        return "ok", str(request.out)
    return "error", message.decode(errors="replace") or f"compiler exited with {status}"


def _compiler_loop() -> int:
    """The compiler process: imports done once, then one compile per JSON line on stdin
    (answered by one JSON line on stdout) until stdin closes."""
    import clearwall.policy.snapshot
    import clearwall.store.loader  # noqa: F401

    for line in sys.stdin:
        result = _compile_in_fork(CompileRequest.from_json(line))
        print(json.dumps(result), flush=True)
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

    def __init__(self, linger: float = 10.0, nice: int = 0) -> None:
        """``nice``: added to the compiler process's niceness (a background compile)."""
        self.linger = linger
        self.nice = nice
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._last = 0.0

    def _process(self) -> subprocess.Popen[str]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            argv = [sys.executable, "-m", "clearwall.control.compiler"]
            argv += ["--parent", str(os.getpid())]  # it dies with this process
            if self.nice:
                argv += ["--nice", str(self.nice)]
            proc = self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        return proc

    def start(self) -> None:
        """Start the compiler process now, from the calling thread: its parent-death
        signal follows the thread that started it, so a compile run on a short-lived
        thread must find the process already started by a long-lived one."""
        with self._lock:
            self._process()

    def compile(self, request: CompileRequest) -> Path:
        """Publish the log and compile as ``request`` says (blocking; see
        ``compile_to``); ``request.out`` once done, SnapshotError on failure."""
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(request.to_json() + "\n")
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
        return request.out

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


def main(argv: list[str] | None = None) -> int:
    """The compiler process: serve compile requests from stdin until it closes."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", type=int, help="die when this process (the gateway) dies")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    if args.parent is not None:
        die_with_parent(args.parent)
    return _compiler_loop()


if __name__ == "__main__":
    sys.exit(main())
