"""The control plane: poll the store's policy version, compile off the data path, swap.

A new snapshot is compiled in a child process (``Compiler``, started on demand and
stopped when changes stop coming) that writes it to a fresh directory; the data plane
then mmap-loads that directory (cheap) and swaps it in with one assignment, so queries
never wait for a compile and in-flight queries finish on the snapshot they started
with. A SQLite store's version is polled with the standard library, so the gateway
never imports SQLAlchemy.

Nothing is enforced that the public log does not show: before each compile, the child
signs and publishes every committed log entry (``TransparencyLog.publish``: tiles, rule
files, then the checkpoint), so a policy change whose writer was killed before it
published is published here, at the latest, and the snapshot is compiled at the size of
the published checkpoint. When the log cannot be published (no key, an unwritable
directory), the compile fails: nothing new is enforced, and the gateway says why. A
node without the key (``[ledger] vkey``, one of several on one PostgreSQL store) never
signs: its publish takes the signer's newest checkpoint from the store, and its version
is that checkpoint's size, so it enforces nothing the signer has not signed and says when
committed entries wait for the signer (``docs/cluster.md``).

On a PostgreSQL store the watcher LISTENs (``store.notify``): every commit, and every
checkpoint the signer records, wakes it at once; polling every ``interval`` stays the
fallback. A poll that cannot read the store keeps the policy in force, logs it once, and
sets ``store_reachable`` (``clearwall_store_reachable``) until the store answers again.

Compiling a large policy whole takes seconds (about 15 s for a million rules), while a
change touches a few orders. So once a whole snapshot (the *base*) exists, a change is
enforced as an overlay (``policy.layered``): only the orders the new log entries name
are read, checked and compiled, over the base with those orders masked. When changes
have stopped for ``consolidate_after`` seconds, the whole policy is compiled again in
the background and swapped in as the new base; it gives the same verdicts as the
overlay it replaces, so the data plane keeps its cached answers across that swap. Old
snapshot directories are removed once newer ones exist, but never a base that a kept
overlay still names. Each directory is locked by the process that compiles it
(``snapshotdir``), so the next start removes what a killed gateway left behind and
nothing a running one uses.

A whole snapshot is saved with its provenance (``ledger.state``), and a clean stop keeps
the last one. A start (``start_policy``) reuses the newest saved snapshot, never trusted
blindly: the log's published signed checkpoint must cover its tree size, and the log's
entries up to that size, re-read and re-hashed, must be those it was compiled from (its
orders, digests, jurisdiction entries and file digests). It is locked before the sweep,
so it is reused whole or swept, never both; the entries committed since are compiled as
an overlay over it, which publishes them first, as every compile does.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.config import LedgerConfig
from clearwall.dnsserver import snapshotdir
from clearwall.dnsserver.lifeline import die_with_parent
from clearwall.dnsserver.policyholder import PolicyView
from clearwall.errors import ClearwallError, SnapshotError, StoreError

if TYPE_CHECKING:
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshot import PolicySnapshot
    from clearwall.store.db import Store
    from clearwall.store.notify import Listener

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 2
RETRY_MAX = 10.0  # seconds between attempts while a policy change cannot be compiled
SIGNER_PATIENCE = 10.0  # seconds unsigned entries wait before a node that follows warns


def load_snapshot(path: Path) -> PolicyView:
    """mmap-load a compiled snapshot directory (a whole snapshot, or an overlay and its
    base)."""
    from clearwall.policy import layered

    return layered.load(path)


def compile_to(
    store_url: str,
    base_url: str,
    out: Path,
    base: Path | None = None,
    since: int = 0,
    ledger: LedgerConfig | None = None,
    parallel: bool = False,
) -> None:
    """Publish the store's log, then compile its enforceable policy as the published
    checkpoint states it and save it at ``out`` (runs in the child); with ``base``, only
    the orders changed since tree size ``since``, as an overlay over the snapshot saved
    at ``base``. ``ledger`` defaults to the store's own (``clearwall.layout``). A whole
    snapshot is saved with its provenance (``loader.save_proven``: a later start may
    reuse it); with ``parallel`` its rules digests are checked in a second process
    (``loader.build_snapshot_proven``)."""
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.log import TransparencyLog
    from clearwall.store.db import open_store
    from clearwall.store.loader import build_overlay, build_snapshot_proven, save_proven

    store = open_store(store_url)
    try:
        try:
            tlog = TransparencyLog(store, resolve_ledger(ledger or LedgerConfig(), store_url))
            size = tlog.publish()
        except ClearwallError as exc:
            raise SnapshotError(
                f"the log cannot be published, so nothing it does not show is enforced: {exc}"
            ) from exc
        if base is None:
            proven = build_snapshot_proven(store, base_url, parallel=parallel, size=size)
            save_proven(*proven, out)
        else:
            from clearwall.policy.layered import save_overlay
            from clearwall.policy.snapshotfile import saved_jurisdictions

            # The jurisdictions in force at the base, so only the new entries are read.
            overlay, masked = build_overlay(
                store, since, base_url, base_jurisdictions=saved_jurisdictions(base), size=size
            )
            save_overlay(overlay, out, base, masked)
    finally:
        store.engine.dispose()


def saved_size(path: Path) -> str:
    """What a saved snapshot holds, for the log: orders, names with rules, response-IP
    rules, jurisdictions, and its bytes on disk (so an operator sees why a start or a
    compile takes the time it takes)."""
    from clearwall.policy.snapshotfile import saved_meta

    try:
        meta = saved_meta(path)
        on_disk = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
        return (
            f"{len(meta['orders']):,} orders, {int(meta['keys']):,} names, "
            f"{len(meta['ip_rules']):,} response-IP rules, "
            f"{len(meta['jurisdictions']):,} jurisdictions, {on_disk / 2**20:.1f} MiB"
        )
    except (OSError, KeyError, TypeError, ValueError, SnapshotError) as exc:
        return f"size unknown: {exc}"


def _ledger_json(ledger: LedgerConfig | None) -> list[str | None] | None:
    """A ledger config as the compiler's JSON requests carry it."""
    if ledger is None:
        return None
    key, tiles = ledger.key_file, ledger.tiles_dir
    return [
        None if key is None else str(key),
        None if tiles is None else str(tiles),
        ledger.origin,
        ledger.vkey,
    ]


def _ledger_from_json(value: list[str | None] | None) -> LedgerConfig | None:
    if value is None:
        return None
    key, tiles, origin, vkey = value
    return LedgerConfig(
        key_file=None if key is None else Path(key),
        tiles_dir=None if tiles is None else Path(tiles),
        origin=origin or LedgerConfig().origin,
        vkey=vkey or "",
    )


@dataclass(frozen=True)
class PublishedHead:
    """The size of the log's published signed checkpoint, and its root hash (hex) when
    known: what a saved snapshot may be reused up to (nothing the public log does not
    show is enforced)."""

    size: int
    root: str | None = None


def published_head(store_url: str, ledger: LedgerConfig | None) -> PublishedHead | None:
    """The log's published checkpoint, read from its tiles directory and verified with
    its key (no database access, nothing written), or None when there is none or it
    cannot be verified (the caller then compiles, which publishes first)."""
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.log import published_checkpoint

    try:
        resolved = resolve_ledger(ledger or LedgerConfig(), store_url)
        checkpoint = published_checkpoint(resolved)
    except (ClearwallError, OSError, ValueError) as exc:
        log.info("the published checkpoint cannot be read (%s): no saved snapshot is reused", exc)
        return None
    if checkpoint is None:
        return None
    return PublishedHead(checkpoint.size, checkpoint.root.hex())


def _log_rows(store_url: str, size: int) -> tuple[int, list[tuple[int, bytes]]]:
    """The log's size and its first ``size`` entries (index, data): with the standard
    library for a SQLite store (no SQLAlchemy on a restart's way), else through the store."""
    path = _sqlite_file(store_url)
    if path is not None and path.is_file():
        uri = f"{path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
            query = "SELECT idx, data FROM log_entries WHERE idx < ? ORDER BY idx"
            rows = [(int(i), bytes(d)) for i, d in db.execute(query, (size,))]
        return (int(row[0]) if row else 0), rows
    from clearwall.store.db import open_store
    from clearwall.store.loader import _rows

    store = open_store(store_url)
    try:
        log_size = store.log_size()
        with store.read() as conn:
            return log_size, list(_rows(conn, size))
    finally:
        store.engine.dispose()


def _whole_snapshots(directory: Path) -> list[tuple[int, int, Path]]:
    """(tree size, time made, path) of the whole snapshots saved in ``directory``
    (``policy-<size>-<ns>``), newest first."""
    found = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            parts = path.name.split("-")
            whole = len(parts) == 3 and parts[0] == "policy"
            if whole and parts[1].isdigit() and parts[2].isdigit() and path.is_dir():
                found.append((int(parts[1]), int(parts[2]), path))
    return sorted(found, reverse=True)


@dataclass
class Reusable:
    """A saved whole snapshot the log confirms: its directory, the tree size it holds,
    and, when the caller claimed it, this process's lock on it (``snapshotdir``)."""

    path: Path
    size: int
    lease: snapshotdir.Lease | None = None


def _why_not(
    store_url: str, path: Path, base_url: str, head: PublishedHead
) -> tuple[str | None, int]:
    """Why the snapshot at ``path`` may not be reused (None: it may) and its tree size;
    FileNotFoundError when it was saved without a provenance."""
    from clearwall.ledger.state import PROVENANCE_FILE, Provenance, mismatch, state_and_root

    provenance = Provenance.from_json((path / PROVENANCE_FILE).read_bytes())
    size = provenance.size
    if size > head.size:
        return f"the published checkpoint (size {head.size}) does not cover its {size}", size
    if size == head.size and head.root is not None and head.root != provenance.root:
        return f"the published checkpoint of size {size} has another root", size
    log_size, rows = _log_rows(store_url, size)
    if log_size < size:
        return f"the log has {log_size} entries, fewer than its {size}", size
    state, root = state_and_root(rows, size)
    why = mismatch(provenance, state, root, base_url, path)
    if why is None and saved_tree_size(path) != size:
        why = "its metadata names another tree size"
    return why, size


def find_reusable(
    store_url: str, directory: Path, base_url: str, head: PublishedHead, claim: bool = False
) -> Reusable | None:
    """The newest whole snapshot in ``directory`` that the published checkpoint ``head``
    covers and the store's log confirms, with the tree size it holds (at most the
    published one: the caller overlays the entries since), or None. Each snapshot passed
    over is logged with the reason (``state.mismatch``).

    With ``claim`` (a gateway that will enforce it) each candidate is locked first and
    one that another running process holds is passed over; the one found stays locked
    (``Reusable.lease``), and those passed over are unlocked again, left for the sweep
    that follows (``snapshotdir.sweep``: what no process holds is a leftover). Without
    it nothing is locked.
    """
    tried = 0
    for _size, _made, path in _whole_snapshots(directory):
        if tried == 2:
            break
        lease = snapshotdir.try_claim(path) if claim else None
        if claim and lease is None:
            continue  # another gateway's, in use
        try:
            why, size = _why_not(store_url, path, base_url, head)
        except FileNotFoundError:
            why, size = "it was saved without a provenance", -1
        except (OSError, ValueError, KeyError, TypeError, SnapshotError, sqlite3.Error) as exc:
            why, size = f"unreadable ({exc})", -1
        tried += 1
        if why is None:
            return Reusable(path, size, lease)
        log.info("saved snapshot %s not reused: %s", path.name, why)
        if lease is not None:
            lease.keep()
    return None


def current_policy(
    store: Store,
    store_url: str,
    base_url: str,
    published: int,
    directory: Path,
    whole: bool = False,
) -> PolicySnapshot | LayeredPolicy:
    """The policy the log's first ``published`` entries commit (the caller published
    them: nothing else is shown), for a command that asks it once (``clearwall check``,
    ``export``): the snapshot a gateway saved in ``directory`` once the published
    checkpoint covers it and the log confirms it, with the entries published since
    compiled over it in memory (unless ``whole`` is asked: then those need a compile);
    else the whole policy compiled, as before snapshots were kept."""
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshot import PolicySnapshot
    from clearwall.policy.snapshotfile import saved_jurisdictions
    from clearwall.store.loader import build_overlay, build_snapshot

    found = find_reusable(store_url, directory, base_url, PublishedHead(published))
    if found is not None and (found.size == published or not whole):
        try:
            if found.size == published:
                return PolicySnapshot.load(found.path)
            overlay, masked = build_overlay(
                store,
                found.size,
                base_url,
                base_jurisdictions=saved_jurisdictions(found.path),
                size=published,
            )
            return LayeredPolicy(PolicySnapshot.load(found.path, masked), overlay)
        except (OSError, SnapshotError) as exc:  # removed meanwhile (a gateway pruned it)
            log.info("saved snapshot %s not used: %s", found.path.name, exc)
    return build_snapshot(store, base_url, size=published)


def saved_tree_size(path: Path) -> int:
    """The tree size a saved snapshot directory was compiled at."""
    from clearwall.policy.snapshotfile import saved_meta

    try:
        return int(saved_meta(path)["tree_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path}: no tree size in the snapshot metadata: {exc}") from exc


def _compile_in_fork(
    store_url: str,
    base_url: str,
    out: str,
    base: str | None,
    since: int,
    ledger: LedgerConfig | None = None,
    parallel: bool = False,
) -> tuple[str, str]:
    """Compile in a forked child that exits afterwards: the memory a big compile takes
    goes back to the system at once instead of staying in the compiler process."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without running any cleanup
        die_with_parent(parent)  # a killed compiler process takes its compile along
        os.close(read_end)
        status = 1
        try:
            base_path = None if base is None else Path(base)
            compile_to(store_url, base_url, Path(out), base_path, since, ledger, parallel)
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
        store_url, base_url, out, base, since, ledger, parallel = json.loads(line)
        result = _compile_in_fork(
            store_url, base_url, out, base, since, _ledger_from_json(ledger), parallel
        )
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

    def __init__(self, linger: float = 10.0) -> None:
        self.linger = linger
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._last = 0.0

    def _process(self) -> subprocess.Popen[str]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            argv = [sys.executable, "-m", "clearwall.dnsserver.policy_source", "--serve"]
            argv += ["--parent", str(os.getpid())]  # it dies with this process
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

    def compile(
        self,
        store_url: str,
        base_url: str,
        out: Path,
        base: Path | None = None,
        since: int = 0,
        ledger: LedgerConfig | None = None,
        parallel: bool = False,
    ) -> Path:
        """Publish the log and compile into ``out`` (blocking), whole or as an overlay
        over ``base`` (see ``compile_to``); raise SnapshotError on failure."""
        request = [
            store_url,
            base_url,
            str(out),
            None if base is None else str(base),
            since,
            _ledger_json(ledger),
            parallel,
        ]
        with self._lock:
            proc = self._process()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request) + "\n")
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
    """Watches the store and publishes new snapshot directories to
    ``publish(path, equivalent)``: ``equivalent`` is True when the snapshot gives the
    same verdicts as the one published before it (a consolidation), so caches may stay.

    ``publish`` is called from the watcher thread; the data plane hops to its own loop.
    """

    def __init__(
        self,
        store_url: str,
        base_url: str,
        directory: Path,
        interval: float,
        publish: Callable[[Path, bool], object],
        consolidate_after: float = 5.0,
        ledger: LedgerConfig | None = None,
    ) -> None:
        """Watch ``store_url``; ``ledger`` is where its log is published before each
        compile (default: the store's own, ``clearwall.layout``)."""
        self.store_url = store_url
        self.ledger = ledger
        self.base_url = base_url
        self.directory = directory
        self.interval = interval
        self.publish = publish
        self.consolidate_after = consolidate_after
        self.version: int | None = None  # the tree size of what was last published
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Every directory this source made, oldest first, with the base it layers over.
        self._made: list[tuple[Path, Path | None]] = []
        self._base: tuple[Path, int] | None = None  # the newest whole snapshot, its size
        self._layered = False  # whether the last one published is an overlay
        self._changed_at = 0.0
        self._compiler: Compiler | None = None
        self._consolidator: Compiler | None = None
        self._consolidation: threading.Thread | None = None
        self._consolidated: tuple[Path, int] | BaseException | None = None
        self._store: Store | None = None
        # The lock on each directory this source made, held until it is removed.
        self._leases: dict[Path, snapshotdir.Lease] = {}
        self._leases_lock = threading.Lock()  # the consolidation thread compiles too
        self._swept = False
        # Set by a store notification (``store.notify``) or a stop: the watcher wakes at
        # once instead of at its next poll.
        self._wake = threading.Event()
        self._listener: Listener | None = None
        self.store_reachable = True  # whether the last poll could read the store
        self.unreachable_since: float | None = None  # time.time() of the first failure
        # (signed size, since when, warned): committed entries waiting for the signer.
        self._waiting: tuple[int, float, bool] | None = None

    def inherited_fds(self) -> tuple[int, ...]:
        """File descriptors a process forked from this one must close (compiler pipes)."""
        return tuple(
            fd
            for c in (self._compiler, self._consolidator)
            if c is not None
            for fd in c.inherited_fds()
        )

    def store_version(self) -> int:
        """The store's policy version (log size): one cheap query. On a node that does
        not sign, the size the signer last signed: it enforces nothing past that. An
        answer marks the store reachable."""
        version = self._store_version()
        self._reachable(None)
        return version

    def _store_version(self) -> int:
        follows = self._follows()
        size = _sqlite_log_size(self.store_url) if self._store is None and not follows else None
        if size is not None:
            return size
        from clearwall.store.db import open_store
        from clearwall.store.loader import policy_version

        if self._store is None:
            self._store = open_store(self.store_url)
        if not follows:
            return policy_version(self._store)
        signed = self._store.latest_checkpoint()
        size = 0 if signed is None else signed.tree_size
        self._waiting_for_signer(self._store.log_size(), size)
        return size

    def _follows(self) -> bool:
        """Whether this node does not sign (no key file, ``[ledger] vkey`` set)."""
        if self.ledger is None or not self.ledger.vkey:
            return False
        from clearwall.layout import resolve_ledger

        return not resolve_ledger(self.ledger, self.store_url).signs()

    def _waiting_for_signer(self, committed: int, signed: int) -> None:
        """Say when committed entries wait for the signer, once per signed size, and
        again as a warning once they have waited ``SIGNER_PATIENCE`` seconds."""
        if committed <= signed:
            self._waiting = None
            return
        now = time.monotonic()
        if self._waiting is None or self._waiting[0] != signed:
            self._waiting = (signed, now, False)
            log.info(
                "%d entries committed, the signer has signed %d: waiting for the signer "
                "(this node holds no ledger key and enforces only what was signed)",
                committed,
                signed,
            )
        elif not self._waiting[2] and now - self._waiting[1] >= SIGNER_PATIENCE:
            self._waiting = (signed, self._waiting[1], True)
            log.warning(
                "the signer has not signed entries %d..%d for %.0fs: is the node holding "
                "the ledger key running? (policy version %s stays in force)",
                signed,
                committed - 1,
                now - self._waiting[1],
                self.version,
            )

    def _compile(
        self,
        compiler: Compiler,
        kind: str,
        base: tuple[Path, int] | None = None,
        parallel: bool = False,
    ) -> tuple[Path, int, float]:
        """Compile into a fresh ``kind-<version>-<ns>`` directory, whole or as an overlay
        over ``base`` (its directory and tree size); (directory, tree size, seconds).
        ``parallel``: see ``compile_to``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"{kind}-{self.store_version()}-{time.time_ns()}"
        lease = snapshotdir.claim(out)  # before the compiler writes anything there
        with self._leases_lock:
            self._leases[out] = lease
        started = time.monotonic()
        try:
            if base is None:
                compiler.compile(
                    self.store_url, self.base_url, out, ledger=self.ledger, parallel=parallel
                )
            else:
                compiler.compile(self.store_url, self.base_url, out, *base, ledger=self.ledger)
            size = saved_tree_size(out)
        except BaseException:
            self._remove(out)  # with whatever a failed compiler left half-written
            raise
        return out, size, time.monotonic() - started

    def _remove(self, path: Path) -> None:
        """Remove a directory this source made, and give up its lock."""
        with self._leases_lock:
            lease = self._leases.pop(path, None)
        if lease is not None:
            lease.release()
        else:
            shutil.rmtree(path, ignore_errors=True)

    def _keep(self, path: Path) -> None:
        """Leave a directory this source made in place for the next start, unlocked."""
        with self._leases_lock:
            lease = self._leases.pop(path, None)
        if lease is not None:
            lease.keep()

    def _overlay_compiler(self) -> Compiler:
        if self._compiler is None:
            self._compiler = Compiler()
        return self._compiler

    def _published(self, out: Path, size: int, base: Path | None) -> None:
        """Record ``out`` (tree size ``size``; an overlay over ``base`` if given) as what
        the data plane enforces from now on."""
        self._made.append((out, base))
        self.version = size
        self._layered = base is not None
        self._prune()

    def compile_now(self) -> Path:
        """Compile the whole current policy (blocking), make it the base, and return its
        directory. The gateway waits for it (a start, or a change whose overlay could not
        be made), so the rules digests are checked on a second core meanwhile. The first
        call first removes the snapshots killed gateways left."""
        self._sweep_once()
        out, size, seconds = self._compile(self._overlay_compiler(), "policy", parallel=True)
        log.info("policy version %d compiled in %.2fs: %s", size, seconds, saved_size(out))
        self._base = (out, size)
        self._published(out, size, None)
        return out

    def _sweep_once(self) -> None:
        """Remove, once, the snapshots no running process holds (``snapshotdir.sweep``):
        what killed gateways left, and saved snapshots a start did not reuse."""
        if not self._swept:
            self._swept = True
            snapshotdir.sweep(self.directory)

    def start_policy(self) -> Path:
        """The policy to start with (blocking): the newest saved whole snapshot that the
        published checkpoint covers and the log confirms (``find_reusable``, which locks
        it before the sweep of the rest), with an overlay for the entries committed since
        (its compile publishes them first); else the whole policy compiled."""
        started = time.monotonic()
        head = published_head(self.store_url, self.ledger)
        found = None
        if head is not None:
            found = find_reusable(self.store_url, self.directory, self.base_url, head, claim=True)
        if found is None:
            return self.compile_now()
        assert found.lease is not None
        with self._leases_lock:
            self._leases[found.path] = found.lease
        self._sweep_once()  # after the claim: what is reused is held, so not swept
        path, size = found.path, found.size
        log.info(
            "policy version %d: reusing the saved snapshot %s, checked against the "
            "published checkpoint (size %d) and the log in %.2fs: %s",
            size,
            path.name,
            head.size if head is not None else -1,
            time.monotonic() - started,
            saved_size(path),
        )
        self._base = (path, size)
        self._published(path, size, None)
        if self.store_version() != size:
            try:
                return self.compile_overlay()
            except SnapshotError as exc:
                log.warning("overlay compile failed (%s); compiling the whole policy", exc)
                return self.compile_now()
        return path

    def compile_overlay(self) -> Path:
        """Compile the orders changed since the base as an overlay over it (blocking) and
        return its directory; the whole policy when there is no base yet."""
        if self._base is None:
            return self.compile_now()
        base = self._base
        out, size, seconds = self._compile(self._overlay_compiler(), "overlay", base)
        log.info(
            "policy version %d compiled in %.2fs as an overlay over version %d",
            size,
            seconds,
            base[1],
        )
        self._changed_at = time.monotonic()
        self._published(out, size, base[0])
        return out

    def poll(self) -> None:
        """One round of the watcher: publish a change as an overlay, a finished
        consolidation as the new base, or start a consolidation once changes stopped."""
        self._collect_consolidation()
        if self.store_version() != self.version:
            try:
                path = self.compile_overlay()
            except SnapshotError as exc:
                log.warning("overlay compile failed (%s); compiling the whole policy", exc)
                path = self.compile_now()
            self.publish(path, False)
        elif (
            self._layered
            and self._consolidation is None
            and time.monotonic() - self._changed_at >= self.consolidate_after
        ):
            self._start_consolidation()

    def _start_consolidation(self) -> None:
        if self._consolidator is None:
            self._consolidator = Compiler()
        consolidator = self._consolidator
        consolidator.start()  # here, not on the consolidation thread (see Compiler.start)

        def run() -> None:
            try:
                out, size, seconds = self._compile(consolidator, "policy")
                log.info(
                    "policy version %d consolidated in %.2fs: %s", size, seconds, saved_size(out)
                )
                self._consolidated = (out, size)
            except BaseException as exc:
                self._consolidated = exc

        self._consolidated = None
        self._consolidation = threading.Thread(target=run, name="policy-consolidate", daemon=True)
        self._consolidation.start()

    def _collect_consolidation(self) -> None:
        thread = self._consolidation
        if thread is None or thread.is_alive():
            return
        self._consolidation = None
        result, self._consolidated = self._consolidated, None
        if not isinstance(result, tuple):
            log.error("policy consolidation failed, keeping the overlay: %s", result)
            self._changed_at = time.monotonic()  # try again after another quiet spell
            return
        out, size = result
        self._base = (out, size)
        if size == self.version:
            self._published(out, size, None)
            self.publish(out, True)
            return
        # Else the store moved on meanwhile: the overlay in force stays, the next change
        # is compiled over this newer base, and the next quiet spell consolidates again.
        self._made.append((out, None))
        self._prune()

    def wait_consolidated(self, timeout: float) -> bool:
        """Wait until a running consolidation has finished (for tests and tools)."""
        thread = self._consolidation
        if thread is not None:
            thread.join(timeout)
        return self._consolidation is None or not self._consolidation.is_alive()

    def _prune(self) -> None:
        """Remove directories no longer needed: all but the last few published, their
        bases and the current base."""
        keep: set[Path] = set()
        for path, base in self._made[-(KEEP_SNAPSHOTS + 1) :]:
            keep.add(path)
            if base is not None:
                keep.add(base)
        if self._base is not None:
            keep.add(self._base[0])
        for entry in list(self._made):
            if entry[0] not in keep:
                self._made.remove(entry)
                self._remove(entry[0])

    def wake(self) -> None:
        """Look at the store now rather than at the next poll (a notification came)."""
        self._wake.set()

    def start(self) -> None:
        """Start polling in a daemon thread, woken at once by the store's notifications
        when it is PostgreSQL (``store.notify``; polling stays the fallback)."""
        if self.store_url.startswith("postgres"):  # a SQLite gateway loads no SQLAlchemy
            from clearwall.store.notify import Listener, libpq_url

            conninfo = libpq_url(self.store_url)
            if conninfo is not None:
                self._listener = Listener(conninfo, self.wake)
                self._listener.start()
        self._thread = threading.Thread(target=self._run, name="policy-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and remove the snapshots this source compiled or reused, but for
        the last whole base saved with its provenance: the next start may reuse it."""
        self._stop.set()
        self._wake.set()
        if self._listener is not None:
            self._listener.stop()
        if self._thread is not None:
            self._thread.join(5)
        for compiler in (self._compiler, self._consolidator):
            if compiler is not None:
                compiler.close()
        if self._consolidation is not None:
            self._consolidation.join(5)
        if self._store is not None:
            self._store.engine.dispose()
        from clearwall.ledger.state import PROVENANCE_FILE

        keep = self._base[0] if self._base is not None else None
        if keep is not None and not (keep / PROVENANCE_FILE).is_file():
            keep = None
        for path, _base in self._made:
            if path == keep:
                self._keep(path)
            else:
                self._remove(path)
        self._made.clear()
        with self._leases_lock:
            left = list(self._leases)
        for path in left:  # a consolidation that finished after it was waited for
            self._remove(path)

    def _run(self) -> None:
        wait = self.interval
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            for compiler in (self._compiler, self._consolidator):
                if compiler is not None and self._consolidation is None:
                    compiler.expire()
            try:
                self.poll()
                wait = self.interval
            except Exception as exc:  # keep enforcing the last good policy
                if isinstance(exc, StoreError) or not self._store_answers():
                    self._reachable(exc)
                else:
                    log.error("policy reload failed, keeping version %s: %s", self.version, exc)
                # A failure that persists (the log cannot be published, say) is retried
                # ever less often, not a compile and an error line every poll.
                wait = min(max(wait * 2, 1.0), RETRY_MAX)

    def _store_answers(self) -> bool:
        """Whether the store answers a read now (a failed compile may be the database
        gone away, seen by the compiler child first)."""
        try:
            self._store_version()
        except Exception:
            return False
        return True

    def _reachable(self, exc: BaseException | None) -> None:
        """Record whether the store could be read (``exc`` None: it could), logging each
        change once: a node that loses its database keeps enforcing what it has."""
        if exc is None:
            if not self.store_reachable:
                since = self.unreachable_since or time.time()
                log.warning(
                    "the store is reachable again after %.0fs; policy version %s in force",
                    time.time() - since,
                    self.version,
                )
            self.store_reachable, self.unreachable_since = True, None
            return
        if self.store_reachable:
            log.error(
                "the store is unreachable (%s): keeping policy version %s in force until "
                "it returns",
                exc,
                self.version,
            )
            self.store_reachable, self.unreachable_since = False, time.time()


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point: compile one snapshot."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="compile requests from stdin")
    parser.add_argument("--parent", type=int, help="die when this process (the gateway) dies")
    parser.add_argument("--db")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    if args.serve:
        return _compiler_loop()
    if args.db is None or args.out is None:
        parser.error("--db and --out are required")  # the store's own ledger is published
    try:
        compile_to(args.db, args.base_url, args.out)
    except ClearwallError as exc:
        print(f"{exc}", file=sys.stderr)  # the parent reports the last line
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
