"""The log's published checkpoint, verified in a short-lived child, so that a gateway holds
neither the log's signing key nor ``cryptography``.

A start reuses a saved snapshot only up to the log's published signed checkpoint
(``reuse``). Checking that checkpoint's Ed25519 signature takes ``cryptography`` (its
Rust and cffi extensions: 7-8 MiB of a 44 MiB gateway, for the life of the process) and,
on the node that signs, reading the signer's private key file: neither belongs in the
process that answers DNS. So a child reads the checkpoint from the tiles directory,
verifies it exactly as the log's readers do (``ledger.published``: ``[ledger] vkey`` on
a node that does not sign, the key file's verifier otherwise, a ``vkey`` naming another
key an error, the origin checked) and answers its size and root. The gateway starts it
as early as it can (``dnsserver.entry``, right after reading its config, so that where
there are two cores the child runs while the gateway imports the rest) and reads the
answer when it picks the policy to start with (``PolicySource.start_policy``).

The child is forked, not a new interpreter: a ``python -m`` child paid its own start-up
and standard library again, 43 ms of CPU, and cost a restart on one pinned core 45-65
ms; forked, it imports only the ledger's reader and ``cryptography`` (into its own
memory, gone when it exits) and costs a restart about 5 ms. It is forked before the
gateway starts any thread (a start without an early check forks from ``start_policy``,
still before the event loop), takes no lock the gateway may hold (it logs nothing), and
never returns into the gateway's code (``os._exit``).

Whatever goes wrong with the child (it cannot be forked, exits non-zero or is killed,
answers nothing or garbage, or takes longer than ``HEAD_TIMEOUT``) counts as an
unverifiable checkpoint does: it is logged, nothing is reused, and the policy is
compiled (which publishes the log first). The child dies with the gateway
(``dnsserver.lifeline``).

It answers one JSON line on a pipe to the request the gateway resolved for its store
(``request``: the log's paths, origin, ``vkey`` and whether this node signs): ``["head",
size, root hex]``, ``["none"]`` when nothing was published yet, or ``["unverifiable",
reason]``; an error is one line of text and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from clearwall.dnsserver.lifeline import die_with_parent
from clearwall.errors import ClearwallError

if TYPE_CHECKING:
    from clearwall.config import LedgerConfig
    from clearwall.ledger.signing import Verifier

log = logging.getLogger(__name__)

# Seconds from the child's start until its answer is given up on (then the policy is
# compiled): it reads one small file and checks one signature, in well under a second
# even on a busy machine; a compile of a large policy takes longer than this anyway.
HEAD_TIMEOUT = 10.0
# What the gateway logs when nothing is reused: a checkpoint that is forged or cannot be
# read, or a child that failed.
_CANNOT_BE_READ = "the published checkpoint cannot be read (%s): no saved snapshot is reused"
_NOT_CHECKED = "the published checkpoint could not be checked (%s): no saved snapshot is reused"


@dataclass(frozen=True)
class PublishedHead:
    """The size of the log's published signed checkpoint, and its root hash (hex) when
    known: what a saved snapshot may be reused up to (nothing the public log does not
    show is enforced)."""

    size: int
    root: str | None = None


def _resolved(store_url: str, ledger: LedgerConfig | None) -> LedgerConfig:
    """``ledger`` (default: the store's own log) with its paths for the store."""
    from clearwall.config import LedgerConfig
    from clearwall.layout import resolve_ledger

    return resolve_ledger(ledger or LedgerConfig(), store_url)


def read_head(store_url: str, ledger: LedgerConfig | None) -> PublishedHead | None:
    """The log's published checkpoint, read from its tiles directory and verified with
    its key (no database access, nothing written), in this process; None when none was
    published. Raises ClearwallError, OSError or ValueError when it cannot be verified.
    What the child answers, for a caller that may hold ``cryptography`` (tests, tools)."""
    from clearwall.ledger.published import published_checkpoint

    checkpoint = published_checkpoint(_resolved(store_url, ledger))
    if checkpoint is None:
        return None
    return PublishedHead(checkpoint.size, checkpoint.root.hex())


def request(store_url: str, ledger: LedgerConfig | None) -> dict[str, Any]:
    """The child's request for the store at ``store_url`` (its log where ``ledger`` says;
    None: the store's own), the log's paths resolved here. Raises what resolving does
    (ClearwallError: a store whose ledger has no place of its own)."""
    resolved = _resolved(store_url, ledger)
    return {
        "tiles_dir": str(resolved.tiles_path()),
        "key_file": str(resolved.key_path()),
        "origin": resolved.origin,
        "vkey": resolved.vkey,
        "signs": resolved.signs(),
    }


def answer(request: dict[str, Any]) -> list[Any]:
    """The child's answer to ``request`` (see the protocol above), verified by the same
    functions as ``ledger.published.published_checkpoint``."""
    from clearwall.ledger.published import checkpoint_in, key_verifier

    def verifier() -> Verifier:
        return key_verifier(Path(request["key_file"]), request["vkey"], bool(request["signs"]))

    try:
        checkpoint = checkpoint_in(Path(request["tiles_dir"]), request["origin"], verifier)
    except (ClearwallError, OSError, ValueError) as exc:
        return ["unverifiable", str(exc) or type(exc).__name__]
    if checkpoint is None:
        return ["none"]
    return ["head", checkpoint.size, checkpoint.root.hex()]


def parse_answer(line: bytes) -> tuple[PublishedHead | None, str | None]:
    """(the head, None) or (None, why it cannot be used) from the child's answer line;
    ValueError when the line is not an answer."""
    reply = json.loads(line)
    match reply:
        case ["head", int(size), str(root)] if size >= 0 and len(root) == 64:
            int(root, 16)  # a hex SHA-256, or ValueError
            return PublishedHead(size, root), None
        case ["none"]:
            return None, None
        case ["unverifiable", str(why)]:
            return None, why
    raise ValueError("not an answer")


class HeadCheck:
    """The checker child of one start: forked as early as the gateway can (``start``),
    its answer read when the start policy is picked (``result``), once."""

    def __init__(
        self,
        child: tuple[int, int] | None,
        timeout: float,
        failure: str | None = None,
        why: str | None = None,
    ) -> None:
        """Wrap a forked child (its pid and the read end of its pipe), whose answer is
        waited for until ``timeout`` seconds after now; or, without one, why it could
        not be started (``failure``) or why the checkpoint cannot be verified without
        asking it (``why``)."""
        self._child = child
        self._failure = failure
        self._why = why
        self.timeout = timeout
        self._started = time.monotonic()

    @classmethod
    def start(
        cls,
        store_url: str,
        ledger: LedgerConfig | None,
        timeout: float = HEAD_TIMEOUT,
        run: Callable[[dict[str, Any]], Any] = answer,
    ) -> HeadCheck:
        """Fork the child for the store at ``store_url`` (its log where ``ledger`` says;
        None: the store's own), to answer within ``timeout`` seconds. ``run``: what the
        child runs on the request in place of ``answer`` (a test's child that fails).
        Never raises: a child that cannot be started is an answer ``result`` gives."""
        try:
            req = request(store_url, ledger)
        except (ClearwallError, OSError, ValueError) as exc:
            return cls(None, timeout, why=str(exc))
        parent = os.getpid()
        try:
            read_end, write_end = os.pipe()
            pid = os.fork()
        except OSError as exc:
            return cls(None, timeout, failure=f"the checker could not be started: {exc}")
        if pid == 0:  # the child: answer on the pipe, then exit without any cleanup
            _child(parent, read_end, write_end, req, run)
        os.close(write_end)
        return cls((pid, read_end), timeout)

    def result(self) -> PublishedHead | None:
        """The verified published head, or None when none was published, or it cannot be
        verified, or the child failed (each logged, but the first): then nothing saved
        is reused."""
        child, self._child = self._child, None
        if child is None:
            if self._why is not None:
                log.info(_CANNOT_BE_READ, self._why)
            if self._failure is not None:
                log.warning(_NOT_CHECKED, self._failure)
            return None
        pid, fd = child
        out = _read_until(fd, self._started + self.timeout)
        if out is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        head, why, failure = None, None, None
        if out is None:
            failure = f"the checker gave no answer in {self.timeout:g}s"
        elif status != 0:
            how = (
                f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
            )
            said = out.decode(errors="replace").strip().splitlines()
            failure = f"the checker {how}" + (f": {said[-1][:300]}" if said else "")
        else:
            try:
                head, why = parse_answer(out)
            except ValueError:  # json.JSONDecodeError too
                failure = f"the checker answered {out[:200]!r}, not a checkpoint"
        if failure is not None:
            log.warning(_NOT_CHECKED, failure)
        elif why is not None:
            log.info(_CANNOT_BE_READ, why)
        return head

    def close(self) -> None:
        """Stop the child if its answer was not read (a start that failed before)."""
        child, self._child = self._child, None
        if child is not None:
            pid, fd = child
            os.close(fd)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to the pipe ``fd`` until its writer closed it (the child
    exited), or None at ``deadline``; ``fd`` is closed either way."""
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _child(
    parent: int,
    read_end: int,
    write_end: int,
    req: dict[str, Any],
    run: Callable[[dict[str, Any]], Any],
) -> NoReturn:
    """The forked child: ``run`` the request, write its answer as one JSON line (or, on
    an error, one line saying it), exit. It never returns into the gateway's code."""
    status = 1
    try:
        # The child touches as little of the gateway's memory as it can: no collection
        # walks the gateway's objects (copying their pages), and it exits at once.
        gc.disable()
        die_with_parent(parent)  # a killed gateway takes its checker along
        os.close(read_end)
        message = (json.dumps(run(req)) + "\n").encode()
        status = 0
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}\n".encode()
    finally:
        try:
            with contextlib.suppress(OSError):
                os.write(write_end, message[:4096] if status else message)
        finally:
            os._exit(status)
