"""Snapshot directories in use: a lock file per directory, and the sweep of what killed
gateways left behind.

A gateway compiles each policy into a fresh directory ``<kind>-<version>-<ns>`` under its
snapshot directory (``policy_source``), which may be shared with other gateways of the
same store. Before the compile starts, the gateway takes an exclusive ``flock`` on
``<name>.lock`` beside it (a ``Lease``) and keeps it for as long as it (or a worker it
forked, which inherits the descriptor) may map the snapshot. The kernel drops the lock
when the last such process dies, however it dies, so at the next start ``sweep`` can
tell a directory a killed process left (its lock is free) from one a running gateway
uses (its lock is held) without trusting pids or clocks. Only names of this pattern are
ever touched: the directory, its ``.<name>.*`` siblings (``PolicySnapshot.save``'s temporary
directories and links) and its lock file.

A clean stop unlocks its last whole snapshot and leaves it in place (``Lease.keep``) for
the next start, which locks it with ``try_claim`` before it sweeps: a saved snapshot is
then either reused whole, held by the starting gateway, or swept as any other, never a
mix of the two.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SNAPSHOT_NAME = re.compile(r"^(?:policy|overlay)-\d+-\d+$")
LOCK_SUFFIX = ".lock"
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + LOCK_SUFFIX)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not unlinked or replaced)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _remove(path: Path) -> None:
    """Remove the snapshot ``path``, its temporary siblings and its lock file."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
    prefix = f".{path.name}."
    with contextlib.suppress(FileNotFoundError):
        for sibling in path.parent.iterdir():
            if sibling.name.startswith(prefix):
                if sibling.is_dir() and not sibling.is_symlink():
                    shutil.rmtree(sibling, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        sibling.unlink()
    with contextlib.suppress(FileNotFoundError):
        _lock_path(path).unlink()


class Lease:
    """A running process's claim on one snapshot directory (held until ``release``)."""

    def __init__(self, path: Path, fd: int) -> None:
        """Use ``claim``; ``fd`` is the locked lock file of ``path``."""
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the directory with its temporary siblings and lock file, then unlock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _remove(self.path)
        finally:
            os.close(fd)

    def keep(self) -> None:
        """Unlock and leave the directory in place: a clean stop keeps its last whole
        snapshot for the next start to reuse (``try_claim``) or sweep."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def claim(path: Path) -> Lease:
    """Lock the name ``path`` for this process before anything is written there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(path)
    while True:
        fd = os.open(lock, _OPEN_FLAGS, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            raise
        # A sweep that locked the file first has unlinked it: take a fresh one.
        if _same_file(fd, lock):
            return Lease(path, fd)
        os.close(fd)


def try_claim(path: Path) -> Lease | None:
    """Lock the existing snapshot ``path`` for this process, or None when a running
    process (this one included) holds it: how a start takes over a saved snapshot
    before the sweep, so that it is either reused whole or swept, never both."""
    lock = _lock_path(path)
    fd = os.open(lock, _OPEN_FLAGS, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    if _same_file(fd, lock):
        return Lease(path, fd)
    os.close(fd)  # another start's sweep removed it meanwhile
    return None


def _owner(name: str) -> str | None:
    """The snapshot name an entry of a snapshot directory belongs to, if any."""
    if SNAPSHOT_NAME.match(name):
        return name
    if name.endswith(LOCK_SUFFIX) and SNAPSHOT_NAME.match(name[: -len(LOCK_SUFFIX)]):
        return name[: -len(LOCK_SUFFIX)]
    if name.startswith("."):
        head = name[1:].split(".", 1)[0]
        if SNAPSHOT_NAME.match(head):
            return head
    return None


def sweep(directory: Path) -> list[str]:
    """Remove every snapshot under ``directory`` that no running process holds; the names
    removed. A directory without a lock file is stale too (its maker died before
    locking, or predates locks)."""
    try:
        names = sorted({n for e in directory.iterdir() if (n := _owner(e.name)) is not None})
    except FileNotFoundError:
        return []
    removed: list[str] = []
    for name in names:
        path = directory / name
        lock = _lock_path(path)
        try:
            fd = os.open(lock, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            log.warning("snapshot %s not checked: %s", path, exc)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running gateway (or its worker) uses it
            if not _same_file(fd, lock):
                continue  # another sweep removed it meanwhile
            _remove(path)
            removed.append(name)
        finally:
            os.close(fd)
    if removed:
        log.info(
            "removed %d snapshot(s) left by stopped gateways in %s: %s",
            len(removed),
            directory,
            ", ".join(removed),
        )
    return removed
