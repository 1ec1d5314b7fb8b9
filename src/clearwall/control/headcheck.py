"""The log's published checkpoint, verified in a short-lived child, so that a gateway holds
neither the log's signing key nor ``cryptography``.

A start reuses a saved snapshot only up to the log's published signed checkpoint
(``reuse``). Checking that checkpoint's Ed25519 signature takes ``cryptography`` (its
Rust and cffi extensions: 7-8 MiB of a 44 MiB gateway, for the life of the process) and,
on the node that signs, reading the signer's private key file: neither belongs in the
process that answers DNS. So a child (``python -m clearwall.control.headcheck``) reads the
checkpoint from the tiles directory, verifies it exactly as the log's readers do
(``ledger.published``: ``[ledger] vkey`` on a node that does not sign, the key file's
verifier otherwise, a ``vkey`` naming another key an error, the origin checked) and
answers its size and root. The gateway starts it as early as it can
(``dnsserver.entry``, right after reading its config, so that where there are two cores
the child runs while the gateway imports the rest) and reads the answer when it picks
the policy to start with (``PolicySource.start_policy``).

Whatever goes wrong with the child (it cannot start, exits non-zero, answers nothing or
garbage, or takes longer than ``HEAD_TIMEOUT``) counts as an unverifiable checkpoint
does: it is logged, nothing is reused, and the policy is compiled (which publishes the
log first). The child dies with the gateway (``dnsserver.lifeline``).

The protocol, one JSON line each way: the request names the log as the gateway resolved
it for its store (``clearwall.layout``): ``{"tiles_dir", "key_file", "origin", "vkey",
"signs"}`` (``signs``: ``LedgerConfig.signs``); the answer is ``["head", size, root
hex]``, ``["none"]`` when nothing was published yet, or ``["unverifiable", reason]``.
The child imports only what that takes (``ledger.published``: not the log writer, not
even the config module), which is about what the gateway no longer imports: a restart
pays next to nothing for it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clearwall.errors import ClearwallError

if TYPE_CHECKING:
    import subprocess

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
    """The checker child of one start: started as early as the gateway can (``start``),
    its answer read when the start policy is picked (``result``), once."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes] | None,
        timeout: float,
        failure: str | None = None,
        why: str | None = None,
    ) -> None:
        """Wrap a started child (``proc``), whose answer is waited for until ``timeout``
        seconds after now; or, without one, why it could not be started (``failure``) or
        why the checkpoint cannot be verified without asking it (``why``)."""
        self._proc = proc
        self._failure = failure
        self._why = why
        self.timeout = timeout
        self._started = time.monotonic()

    @classmethod
    def start(
        cls,
        store_url: str,
        ledger: LedgerConfig | None,
        argv: Sequence[str] | None = None,
        timeout: float = HEAD_TIMEOUT,
    ) -> HeadCheck:
        """Start the child for the store at ``store_url`` (its log where ``ledger`` says;
        None: the store's own), to answer within ``timeout`` seconds. ``argv``: run that
        program in the child's place (a test's child that fails). Never raises: a child
        that cannot be started is an answer ``result`` gives."""
        import subprocess

        try:
            line = json.dumps(request(store_url, ledger)).encode() + b"\n"
        except (ClearwallError, OSError, ValueError) as exc:
            return cls(None, timeout, why=str(exc))
        if argv is None:
            argv = [sys.executable, "-m", __name__, "--parent", str(os.getpid())]
        proc = None
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert proc.stdin is not None
            # A few hundred bytes: the pipe takes them whole, the child reads when ready.
            proc.stdin.write(line)
            proc.stdin.close()
            proc.stdin = None  # written: ``communicate`` (3.11) would flush it, closed
        except OSError as exc:
            check = cls(proc, timeout, failure=f"the checker could not be started: {exc}")
            check.close()
            return check
        return cls(proc, timeout)

    def result(self) -> PublishedHead | None:
        """The verified published head, or None when none was published, or it cannot be
        verified, or the child failed (each logged, but the first): then nothing saved
        is reused."""
        import subprocess

        proc, self._proc = self._proc, None
        if proc is None:
            if self._why is not None:
                log.info(_CANNOT_BE_READ, self._why)
            if self._failure is not None:
                log.warning(_NOT_CHECKED, self._failure)
            return None
        left = max(self.timeout - (time.monotonic() - self._started), 0.1)
        failure: str | None = None
        try:
            out, err = proc.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            failure = f"the checker gave no answer in {self.timeout:g}s"
        else:
            head, why = None, None
            if proc.returncode != 0:
                how = (
                    f"was killed by signal {-proc.returncode}"
                    if proc.returncode < 0
                    else f"exited with status {proc.returncode}"
                )
                said = err.decode(errors="replace").strip().splitlines()
                failure = f"the checker {how}" + (f": {said[-1][:300]}" if said else "")
            else:
                try:
                    head, why = parse_answer(out)
                except ValueError:  # json.JSONDecodeError too
                    failure = f"the checker answered {out[:200]!r}, not a checkpoint"
            if failure is None:
                if why is not None:
                    log.info(_CANNOT_BE_READ, why)
                return head
        log.warning(_NOT_CHECKED, failure)
        return None

    def close(self) -> None:
        """Stop the child if its answer was not read (a start that failed before)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()


def main(argv: list[str] | None = None) -> int:
    """The child: read one request line from stdin, answer one line on stdout."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--parent"] and len(args) == 2:
        from clearwall.dnsserver.lifeline import die_with_parent

        die_with_parent(int(args[1]))  # a killed gateway takes its checker along
    elif args:
        print("usage: python -m clearwall.control.headcheck [--parent PID]", file=sys.stderr)
        return 2
    print(json.dumps(answer(json.loads(sys.stdin.readline()))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
