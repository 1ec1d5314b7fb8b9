"""C2SP tlog-cosignature ``cosignature/v1``: witnesses' timestamped Ed25519 checkpoint signatures.

A cosignature is a signed-note signature line on a checkpoint (tlog-cosignature,
"Format"): ``— <cosigner name> base64(key id || timestamp || signature)``. The key id is
SHA-256(name || "\\n" || 0x04 || 32-byte public key)[:4]; the timestamp is a big-endian
u64 of POSIX seconds (``timestamped_signature``, RFC 8446 section 3 encoding); the
Ed25519 signature covers ``cosignature/v1\\ntime <timestamp>\\n`` followed by the
checkpoint's whole note text ("Ed25519 signed message"). A v1 cosignature states that,
at that time, this was the largest consistent tree the cosigner had seen for the origin.

Pure: no I/O, and no clock unless a caller passes the time. Parsing a witness's key (the
config does) imports no ``cryptography``: only signing and verifying do (``signing``).
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from clearwall.errors import LedgerError, VerificationError
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.note import NoteSignature, split_note
from clearwall.ledger.signing import (
    Verifier,
    check_key_name,
    decode_key_bytes,
    ed25519_public,
    ed25519_sign,
    ed25519_verify,
    key_id,
    split_vkey,
)

ALG_COSIGNATURE_V1 = 0x04  # signed-note signature type: timestamped Ed25519 cosignature
HEADER = "cosignature/v1\n"  # domain separation line of the signed message
MAX_TIMESTAMP = (1 << 63) - 1  # "It MUST NOT exceed 2^63 - 1"
SIGNATURE_SIZE = 8 + 64  # u64 timestamp || Ed25519 signature
FUTURE_SKEW = 600  # seconds a cosignature's time may run ahead of the verifier's clock


def cosigner_key_id(name: str, public_key: bytes) -> int:
    """SHA-256(name || "\\n" || 0x04 || public key)[:4] as a big-endian integer."""
    return key_id(name, public_key, ALG_COSIGNATURE_V1)


def signed_message(text: str, timestamp: int) -> bytes:
    """The bytes a cosigner signs: header line, time line, then the checkpoint text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise VerificationError(f"cosignature timestamp {timestamp} is out of range")
    if not text.endswith("\n"):
        raise VerificationError("checkpoint text must end in a newline")
    return f"{HEADER}time {timestamp}\n{text}".encode()


def split_signature(signature: bytes) -> tuple[int, bytes]:
    """The timestamp and Ed25519 signature of a ``timestamped_signature``."""
    if len(signature) != SIGNATURE_SIZE:
        raise VerificationError(
            f"a cosignature/v1 signature is {SIGNATURE_SIZE} bytes, not {len(signature)}"
        )
    (timestamp,) = struct.unpack(">Q", signature[:8])
    return int(timestamp), signature[8:]


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A witness's public key: checks its cosignature lines (a signed-note verifier)."""

    name: str
    key_id: int
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` (timestamp || Ed25519) cosigns the note text ``message``."""
        try:
            timestamp, sig = split_signature(signature)
            signed = signed_message(message.decode("utf-8"), timestamp)
        except (VerificationError, UnicodeDecodeError):
            return False
        return ed25519_verify(self.public_key, sig, signed)

    @property
    def vkey(self) -> str:
        """The C2SP vkey: ``name+keyid+base64(0x04 || public key)``."""
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"


@dataclass(frozen=True, slots=True)
class Cosigner:
    """A witness's signing key: name, key id and Ed25519 seed. Never printed."""

    name: str
    key_id: int
    seed: bytes

    def cosign(self, text: str, timestamp: int) -> NoteSignature:
        """The cosignature line over checkpoint ``text`` at POSIX time ``timestamp``."""
        if timestamp <= 0:
            # tlog-witness: "The cosignature MUST NOT omit the timestamp".
            raise LedgerError("a witness cosignature needs a non-zero timestamp")
        message = signed_message(text, timestamp)
        sig = ed25519_sign(self.seed, message)
        return NoteSignature(self.name, self.key_id, struct.pack(">Q", timestamp) + sig)

    @property
    def verifier(self) -> CosignatureVerifier:
        """The matching public key."""
        return CosignatureVerifier(self.name, self.key_id, ed25519_public(self.seed))

    @property
    def skey(self) -> str:
        """The key file text: ``PRIVATE+KEY+name+keyid+base64(0x04 || seed)``. Keep it secret."""
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    def __repr__(self) -> str:  # never show the seed in logs or tracebacks
        return f"Cosigner(name={self.name!r}, key_id={self.key_id:08x})"


def generate_cosigner(name: str, seed: bytes | None = None) -> Cosigner:
    """A new cosigner key named ``name`` (random unless ``seed`` is given, for tests)."""
    check_key_name(name)
    if seed is None:
        seed = os.urandom(32)
    if len(seed) != 32:
        raise LedgerError("an Ed25519 seed is 32 bytes")
    return Cosigner(name, cosigner_key_id(name, ed25519_public(seed)), seed)


def parse_cosigner_vkey(text: str) -> CosignatureVerifier:
    """Parse a witness vkey (signature type 0x04), checking its key id."""
    return CosignatureVerifier(*split_vkey(text, ALG_COSIGNATURE_V1))


def parse_cosigner_skey(text: str) -> Cosigner:
    """Parse a cosigner key file text, checking its key id."""
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise LedgerError("malformed witness key file: want PRIVATE+KEY+name+id+key")
    name, hex_id, key_text = parts[2:]
    try:
        seed = decode_key_bytes(key_text, "witness key", ALG_COSIGNATURE_V1)
    except VerificationError as exc:
        raise LedgerError(str(exc)) from exc
    cosigner = generate_cosigner(name, seed)
    if f"{cosigner.key_id:08x}" != hex_id.lower():
        raise LedgerError("witness key id does not match its name and key")
    return cosigner


# -- checking a checkpoint's cosignatures against a witness policy ----------------------

VALID, MISSING, INVALID, FUTURE = "valid", "missing", "invalid", "future"


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """What one required witness's cosignature on a checkpoint amounts to."""

    witness: CosignatureVerifier
    status: str  # VALID, MISSING, INVALID or FUTURE
    timestamp: int | None = None  # of the valid (or offending) cosignature
    line: str = ""  # the valid cosignature line, to show or re-attach

    def describe(self) -> str:
        """One phrase for messages: ``witness.example/w1: no cosignature``."""
        who = f"{self.witness.name}+{self.witness.key_id:08x}"
        if self.status == VALID:
            return f"{who}: cosigned at {self.timestamp}"
        if self.status == MISSING:
            return f"{who}: no cosignature"
        if self.status == FUTURE:
            return f"{who}: cosignature dated in the future ({self.timestamp})"
        return f"{who}: cosignature does not verify (made for another checkpoint, or altered)"


@dataclass(frozen=True, slots=True)
class CosignatureReport:
    """The checkpoint a note holds and each required witness's result, against a quorum."""

    checkpoint: Checkpoint
    results: tuple[WitnessResult, ...]
    quorum: int

    @property
    def valid(self) -> list[WitnessResult]:
        """The witnesses whose cosignature holds."""
        return [r for r in self.results if r.status == VALID]

    @property
    def ok(self) -> bool:
        """At least ``quorum`` valid cosignatures."""
        return len(self.valid) >= self.quorum

    def failure(self) -> str:
        """Why the checkpoint falls short, naming each missing or invalid witness."""
        cp = self.checkpoint
        bad = [r.describe() for r in self.results if r.status != VALID]
        return (
            f"checkpoint {cp.origin} size {cp.size} has {len(self.valid)} valid witness "
            f"cosignature(s), {self.quorum} required: " + "; ".join(bad)
        )


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """The witnesses a verifier trusts and how many of them must cosign (the quorum)."""

    witnesses: tuple[CosignatureVerifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        """Refuse a quorum that no set of these witnesses can meet, and duplicate keys."""
        if not 0 <= self.quorum <= len(self.witnesses):
            raise VerificationError(
                f"quorum {self.quorum} is not between 0 and the {len(self.witnesses)} "
                "witness(es) given"
            )
        keys = [w.public_key for w in self.witnesses]
        if len(set(keys)) != len(keys):
            raise VerificationError("the same witness key is given twice")

    def check(self, note: str | bytes, log: Verifier, now: int | None = None) -> CosignatureReport:
        """Verify the log's signature and every required cosignature; no raise on quorum."""
        return check_cosignatures(note, log, self.witnesses, self.quorum, now)

    def require(self, note: str | bytes, log: Verifier, now: int | None = None) -> Checkpoint:
        """The checkpoint, if signed by ``log`` and cosigned by a quorum; else raise."""
        report = self.check(note, log, now)
        if not report.ok:
            raise VerificationError(report.failure())
        return report.checkpoint


def check_cosignatures(
    note: str | bytes,
    log: Verifier,
    witnesses: Sequence[CosignatureVerifier],
    quorum: int,
    now: int | None = None,
) -> CosignatureReport:
    """Check a checkpoint note: the log's signature (raises), then each witness's line.

    Lines by keys not in ``witnesses`` are ignored (signed-note: unknown keys); a line
    whose name and key id match a witness must verify, else that witness is INVALID.
    With ``now``, a cosignature dated more than FUTURE_SKEW seconds ahead is refused
    (tlog-cosignature: "verifiers MAY reject cosignatures with timestamps in the future").
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError("checkpoint note is not UTF-8") from exc
    checkpoint = open_checkpoint(note, log)
    text, sigs = split_note(note)
    message = text.encode("utf-8")
    results: list[WitnessResult] = []
    for w in witnesses:
        best: WitnessResult = WitnessResult(w, MISSING)
        for sig in sigs:
            if (sig.name, sig.key_id) != (w.name, w.key_id):
                continue
            if not w.verify(message, sig.signature):
                best = WitnessResult(w, INVALID)
                break  # a known key's bad line taints the witness, whatever else is there
            timestamp, _ = split_signature(sig.signature)
            if now is not None and timestamp > now + FUTURE_SKEW:
                best = WitnessResult(w, FUTURE, timestamp)
                break
            if best.status == MISSING or (best.timestamp or 0) < timestamp:
                best = WitnessResult(w, VALID, timestamp, sig.line())
        results.append(best)
    return CosignatureReport(checkpoint, tuple(results), quorum)


def parse_witness_arg(text: str) -> tuple[CosignatureVerifier, str | None]:
    """A verifier's ``--witness`` value: ``VKEY`` or ``VKEY URL`` (tlog-policy's order).

    The URL, when given, is the witness's monitoring prefix: an online verifier asks it
    which checkpoint it holds, to name a conflict instead of only a missing cosignature.
    """
    parts = text.split()
    if not 1 <= len(parts) <= 2:
        raise VerificationError(f"--witness wants 'VKEY' or 'VKEY URL', got {text!r}")
    url = parts[1].rstrip("/") if len(parts) == 2 else None
    if url is not None and not url.startswith(("http://", "https://")):
        raise VerificationError(f"witness URL {url!r} is not http:// or https://")
    return parse_cosigner_vkey(parts[0]), url


def policy_from_args(
    witnesses: Sequence[str], quorum: int | None
) -> tuple[WitnessPolicy | None, dict[str, str]]:
    """The policy of ``--witness`` values and ``--quorum``, and each witness's URL by vkey.

    The quorum defaults to every witness given.
    """
    if not witnesses:
        if quorum:
            raise VerificationError("--quorum needs --witness keys to count cosignatures from")
        return None, {}
    parsed = [parse_witness_arg(w) for w in witnesses]
    policy = WitnessPolicy(tuple(v for v, _ in parsed), len(parsed) if quorum is None else quorum)
    return policy, {v.vkey: url for v, url in parsed if url}
