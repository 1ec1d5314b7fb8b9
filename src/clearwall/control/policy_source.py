"""The control plane: poll the store's policy version, compile off the data path, swap.

A new snapshot is compiled in a child process (``compiler.Compiler``, started on
demand and stopped when changes stop coming) that writes it to a fresh directory; the data plane
then mmap-loads that directory (cheap) and swaps it in with one assignment, so queries
never wait for a compile and in-flight queries finish on the snapshot they started
with. A SQLite store's version is polled with the standard library (``logread``), so
the gateway never imports SQLAlchemy.

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
overlay it replaces, so the data plane keeps its cached answers across that swap.

A whole compile the data plane waits for (a first start, or a change no overlay could
carry) of a large policy (``KEYTABLE_FROM`` name rules) keeps its names in a key table
(``policy.keytable``: a tenth of the trie's build time, eight times its size), so the
gateway answers sooner; it is then consolidated the same way, at once for a start, into
a snapshot with the compact trie. Consolidations run in a compiler process of lower
priority (``nice`` 10): the data plane comes first. Old
snapshot directories are removed once newer ones exist, but never a base that a kept
overlay still names. Each directory is locked by the process that compiles it
(``snapshotdir``), so the next start removes what a killed gateway left behind and
nothing a running one uses.

A whole snapshot is saved with its provenance (``ledger.state``), and a clean stop keeps
the last one. A start (``start_policy``) reuses the newest saved snapshot that the
published checkpoint covers and the log confirms (``reuse``), never trusted blindly; the
checkpoint's signature is verified in a short-lived child (``headcheck``), so the gateway
never loads the log's key nor ``cryptography``. It is locked before the sweep, so it is
reused whole or swept, never both; the entries committed since are compiled as an
overlay over it, which publishes them first, as every compile does.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.config import LedgerConfig
from clearwall.control import snapshotdir
from clearwall.control.compiler import Compiler, CompileRequest
from clearwall.control.headcheck import HeadCheck
from clearwall.control.logread import log_size
from clearwall.control.reuse import find_reusable, saved_size, saved_tree_size
from clearwall.errors import SnapshotError, StoreError

if TYPE_CHECKING:
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshot import PolicySnapshot
    from clearwall.store.db import Store
    from clearwall.store.notify import Listener

# The data plane's client interface (tests/test_layers.py: ``dnsserver`` imports nothing
# else of the control plane); ``HeadCheck`` so a gateway starts the published checkpoint's
# check before its own imports.
__all__ = ["HeadCheck", "PolicySource", "load_snapshot", "saved_size"]

log = logging.getLogger(__name__)

KEEP_SNAPSHOTS = 2
CONSOLIDATION_NICE = 10  # the consolidating compiler yields the CPU to the data plane
# A whole compile the data plane waits for keeps its names in a key table from this many
# name rules: below it the trie takes under a twentieth of a second to build, and a
# consolidation would only cost a second compile.
KEYTABLE_FROM = 100_000
RETRY_MAX = 10.0  # seconds between attempts while a policy change cannot be compiled
SIGNER_PATIENCE = 10.0  # seconds unsigned entries wait before a node that follows warns


def load_snapshot(path: Path) -> PolicySnapshot | LayeredPolicy:
    """mmap-load a compiled snapshot directory (a whole snapshot, or an overlay and its
    base)."""
    from clearwall.policy import layered

    return layered.load(path)


def _names_in_key_table(path: Path) -> bool:
    """Whether the whole snapshot saved at ``path`` keeps its names in a key table."""
    from clearwall.policy.keytable import KIND
    from clearwall.policy.snapshotfile import saved_meta

    return bool(saved_meta(path).get("names") == KIND)


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
        self._compact = False  # whether the base keeps its names in a key table
        self.keytable_from = KEYTABLE_FROM
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
        size = log_size(self.store_url) if self._store is None and not follows else None
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
        keytable_from: int | None = None,
    ) -> tuple[Path, int, float]:
        """Compile into a fresh ``kind-<version>-<ns>`` directory, whole or as an overlay
        over ``base`` (its directory and tree size); (directory, tree size, seconds).
        ``parallel``, ``keytable_from``: see ``compile_to``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out = self.directory / f"{kind}-{self.store_version()}-{time.time_ns()}"
        lease = snapshotdir.claim(out)  # before the compiler writes anything there
        with self._leases_lock:
            self._leases[out] = lease
        started = time.monotonic()
        try:
            base_path, since = base if base is not None else (None, 0)
            compiler.compile(
                CompileRequest(
                    self.store_url,
                    self.base_url,
                    out,
                    base_path,
                    since,
                    self.ledger,
                    parallel,
                    keytable_from,
                )
            )
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
        be made), so the rules digests are checked on a second core meanwhile and the
        names go into a key table, consolidated into a trie later. The first call first
        removes the snapshots killed gateways left."""
        self._sweep_once()
        out, size, seconds = self._compile(
            self._overlay_compiler(), "policy", parallel=True, keytable_from=self.keytable_from
        )
        log.info("policy version %d compiled in %.2fs: %s", size, seconds, saved_size(out))
        self._base = (out, size)
        self._compact = _names_in_key_table(out)
        self._published(out, size, None)
        return out

    def _sweep_once(self) -> None:
        """Remove, once, the snapshots no running process holds (``snapshotdir.sweep``):
        what killed gateways left, and saved snapshots a start did not reuse."""
        if not self._swept:
            self._swept = True
            snapshotdir.sweep(self.directory)

    def start_policy(self, check: HeadCheck | None = None) -> Path:
        """The policy to start with (blocking): the newest saved whole snapshot that the
        published checkpoint covers and the log confirms (``find_reusable``, which locks
        it before the sweep of the rest), with an overlay for the entries committed since
        (its compile publishes them first); else the whole policy compiled.

        The checkpoint is verified in a child (``headcheck``): ``check``, the one the
        caller started earlier for this store and ledger, else one started here."""
        started = time.monotonic()
        if check is None:
            check = HeadCheck.start(self.store_url, self.ledger)
        head = check.result()
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
        self._compact = _names_in_key_table(path)
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
                self._changed_at = time.monotonic()
            self.publish(path, False)
        elif (
            (self._layered or self._compact)
            and self._consolidation is None
            and time.monotonic() - self._changed_at >= self.consolidate_after
        ):
            self._start_consolidation()

    def _start_consolidation(self) -> None:
        if self._consolidator is None:
            self._consolidator = Compiler(nice=CONSOLIDATION_NICE)
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
        self._compact = False
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
