"""C2SP signed-note: a UTF-8 text, a blank line, and one signature line per key.

Format (C2SP signed-note, "Format"): the text ends in a newline; then an empty line;
then lines ``— <key name> <base64(key id (4 bytes, big-endian) || signature)>``. A note
is accepted when at least one signature is by a known key and every signature line that
names a known key (same name and id) verifies. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from clearwall.errors import VerificationError
from clearwall.ledger.signing import Signer

SIG_PREFIX = "\u2014 "  # em dash and a space
MAX_SIGNATURES = 100  # as Go's sumdb/note, to bound work on hostile input


class NoteVerifier(Protocol):
    """What checks one key's signature lines: a log ``Verifier``, a witness's cosigner."""

    @property
    def name(self) -> str:
        """The key name of the signature lines it checks."""
        ...

    @property
    def key_id(self) -> int:
        """The 32-bit key id of the signature lines it checks."""
        ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` (the line's bytes after the key id) signs ``message``."""
        ...


V = TypeVar("V", bound=NoteVerifier)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, key id and the raw signature."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise VerificationError("note text must end in a newline")
    if "\n\n" in text or text.startswith("\n"):
        raise VerificationError("note text must not contain blank lines")


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note of ``text`` by each of ``signers``."""
    _check_text(text)
    message = text.encode("utf-8")
    lines = [NoteSignature(s.name, s.key_id, s.sign(message)).line() + "\n" for s in signers]
    return text + "\n" + "".join(lines)


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and parsed signature lines (no verification)."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise VerificationError("malformed note: no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    if not block.endswith("\n"):
        raise VerificationError("malformed note: signature block must end in a newline")
    sigs: list[NoteSignature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise VerificationError(f"malformed note signature line {line[:60]!r}")
        fields = line[len(SIG_PREFIX) :].split(" ")
        if len(fields) != 2 or not fields[0]:
            raise VerificationError(f"malformed note signature line {line[:60]!r}")
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError("note signature is not valid base64") from exc
        if len(blob) < 5:
            raise VerificationError("note signature is too short")
        sigs.append(NoteSignature(fields[0], int.from_bytes(blob[:4], "big"), blob[4:]))
    if len(sigs) > MAX_SIGNATURES:
        raise VerificationError("note has too many signatures")
    return text, sigs


def open_note(note: str | bytes, verifiers: Iterable[V]) -> tuple[str, list[V]]:
    """Verify a signed note; return its text and the verifiers whose signatures held.

    Raises VerificationError when no known key signed it or a known key's signature fails.
    """
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VerificationError("note is not UTF-8") from exc
    text, sigs = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    message = text.encode("utf-8")
    good: list[V] = []
    for sig in sigs:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue  # signatures by other keys (witnesses, mirrors) are allowed
        if not verifier.verify(message, sig.signature):
            raise VerificationError(
                f"invalid signature by key {sig.name}+{sig.key_id:08x}: the note was altered "
                "or signed by another key"
            )
        good.append(verifier)
    if not good:
        names = ", ".join(f"{v.name}+{v.key_id:08x}" for v in known.values())
        raise VerificationError(f"note has no signature by a known key ({names})")
    return text, good


def with_signatures(note: str, extra: Iterable[NoteSignature]) -> str:
    """``note`` with the ``extra`` signature lines; a key's newer line replaces its old one.

    Used to attach witnesses' cosignatures to a log's checkpoint (C2SP tlog-witness: the
    client "can move the valid signatures to its own view of the checkpoint").
    """
    text, sigs = split_note(note)
    by_key = {(s.name, s.key_id): s for s in sigs}
    for sig in extra:
        by_key[(sig.name, sig.key_id)] = sig
    if len(by_key) > MAX_SIGNATURES:
        raise VerificationError("note would have too many signatures")
    return text + "\n" + "".join(s.line() + "\n" for s in by_key.values())
