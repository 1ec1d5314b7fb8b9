"""C2SP tlog-witness ``add-checkpoint``: the request body, the checks, and the answers.

Request body (tlog-witness, "add-checkpoint"): ``old <size>`` line, up to 63 base64
consistency-proof lines, an empty line, then the signed checkpoint note. The checks run
in the order the spec lists them, each with its status: unknown origin 404; no
trusted signature, or a trusted key's line that fails, 403; old size above the
checkpoint's 400; old size not the cosigned size 409 (body: that size, type
``text/x.tlog.size``); an empty tree with another root, a proof from size 0, a proof
that does not verify, or another root at the same size 422. Parsing is pure; the
stored state comes in and the new state goes out through ``WitnessStore``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass

from clearwall.errors import LedgerError, NotFound, VerificationError, WitnessRefusal
from clearwall.ledger import proofs
from clearwall.ledger.checkpoint import Checkpoint, parse_checkpoint
from clearwall.ledger.cosignature import Cosigner
from clearwall.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from clearwall.ledger.note import NoteSignature, open_note, split_note
from clearwall.ledger.signing import Verifier, parse_vkey
from clearwall.witness.store import WitnessedLog, WitnessStore

MAX_PROOF_LINES = 63  # "The client MUST NOT send more than 63 consistency proof lines"
MAX_BODY = 64 * 1024  # 63 proof lines and a checkpoint with 100 signatures fit easily
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed add-checkpoint request (signatures not yet verified)."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, body, content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body; WitnessRefusal(400) names what is malformed."""
    if len(body) > MAX_BODY:
        raise WitnessRefusal(413, f"request body over {MAX_BODY} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WitnessRefusal(400, "request body is not UTF-8") from exc
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "no empty line between the proof and the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise WitnessRefusal(400, f"first line must be 'old <size>', got {lines[0][:40]!r}")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessRefusal(400, f"{len(proof_lines)} proof lines, at most {MAX_PROOF_LINES}")
    proof: list[bytes] = []
    for n, line in enumerate(proof_lines, 1):
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WitnessRefusal(400, f"proof line {n} is not base64") from exc
        if len(h) != HASH_SIZE:
            raise WitnessRefusal(400, f"proof line {n} is {len(h)} bytes, not {HASH_SIZE}")
        proof.append(h)
    try:
        cp_text, _ = split_note(note)
        checkpoint = parse_checkpoint(cp_text)
    except VerificationError as exc:
        raise WitnessRefusal(400, f"malformed checkpoint: {exc}") from exc
    return AddCheckpoint(int(match.group(1)), tuple(proof), note, checkpoint)


def _trusted(log: WitnessedLog) -> list[Verifier]:
    return [parse_vkey(k) for k in log.vkeys]


def _conflict(req: AddCheckpoint, log: WitnessedLog) -> str | None:
    """Why a checkpoint refused with 409 is evidence, or None when it is merely stale."""
    cp = req.checkpoint
    if cp.size == log.size and cp.root != log.root:
        return (
            f"fork: a different tree of the cosigned size {log.size} "
            f"(root {base64.b64encode(cp.root).decode()}, cosigned "
            f"{base64.b64encode(log.root).decode()})"
        )
    if cp.size < log.size:
        return f"rollback: size {cp.size} is below the cosigned size {log.size}"
    return None


class Witness:
    """The add-checkpoint logic over a store and a cosigner key (thread-safe via the DB)."""

    def __init__(self, store: WitnessStore, cosigner: Cosigner, clock: Callable[[], float]):
        """Cosign with ``cosigner``, timestamps from ``clock`` (POSIX seconds)."""
        self.store = store
        self.cosigner = cosigner
        self.clock = clock

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one request: check, persist, then cosign; never raises for bad input."""
        try:
            return self._add(body)
        except WitnessRefusal as exc:
            return Answer(exc.status, f"{exc}\n")

    def _add(self, body: bytes) -> Answer:
        req = parse_request(body)
        cp = req.checkpoint
        log = self.store.get_log(cp.origin)
        if log is None:
            raise WitnessRefusal(404, f"unknown log origin {cp.origin!r}")
        try:
            _, good = open_note(req.note, _trusted(log))
        except VerificationError as exc:
            raise WitnessRefusal(403, f"checkpoint signature: {exc}") from exc
        if req.old_size > cp.size:
            raise WitnessRefusal(400, f"old size {req.old_size} is above size {cp.size}")
        try:
            with self.store.locked(cp.origin) as (conn, stored):
                answer = self._check(req, stored)
                if answer.status == 200:
                    line = self.cosigner.cosign(cp.text(), int(self.clock()))
                    # What monitors fetch: the log's verified signatures and ours.
                    sigs = "".join(f"{v.line()}\n" for v in _log_lines(req.note, good))
                    served = f"{cp.text()}\n{sigs}{line.line()}\n"
                    self.store.update(conn, stored, cp.size, cp.root, served)
                    return Answer(200, line.line() + "\n")
                reason = answer.body.strip()
                if answer.status == 409:
                    why = _conflict(req, stored)
                    if why is None:
                        return answer
                    reason = why
                self.store.keep_evidence(
                    conn, stored, answer.status, reason, cp.size, cp.root, body.decode("utf-8")
                )
                return answer
        except NotFound as exc:
            raise WitnessRefusal(404, str(exc)) from exc

    def _check(self, req: AddCheckpoint, stored: WitnessedLog) -> Answer:
        """The consistency checks against the stored checkpoint (inside its row lock)."""
        cp = req.checkpoint
        if req.old_size != stored.size:
            return Answer(409, f"{stored.size}\n", SIZE_CONTENT_TYPE)
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            return Answer(422, "a checkpoint of size 0 must have the empty tree's root\n")
        if req.old_size == 0 and req.proof:
            return Answer(422, "no consistency proof is needed from size 0\n")
        if req.old_size == cp.size and cp.root != stored.root:
            return Answer(422, f"a different root for the cosigned size {cp.size}\n")
        try:
            proofs.verify_consistency(req.old_size, cp.size, stored.root, cp.root, req.proof)
        except VerificationError as exc:
            return Answer(422, f"consistency proof from {req.old_size}: {exc}\n")
        return Answer(200, "")

    def latest(self, origin_hash: str) -> Answer:
        """The monitoring endpoint: the latest cosigned checkpoint of a log, or 404."""
        log = self.store.by_origin_hash(origin_hash.lower())
        if log is None or not log.note:
            return Answer(404, "no checkpoint cosigned for that origin hash\n")
        return Answer(200, log.note)


def _log_lines(note: str, good: list[Verifier]) -> list[NoteSignature]:
    _, sigs = split_note(note)
    keys = {(v.name, v.key_id) for v in good}
    return [s for s in sigs if (s.name, s.key_id) in keys]


def add_log_key(store: WitnessStore, origin: str, vkey: str) -> bool:
    """Validate ``vkey`` (an Ed25519 note key, C2SP type 0x01) and witness ``origin`` with it."""
    if not origin or origin != origin.strip() or "\n" in origin:
        raise LedgerError(f"invalid log origin {origin!r}")
    verifier = parse_vkey(vkey)
    return store.add_log(origin, verifier.vkey)
