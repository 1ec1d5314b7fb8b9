"""C2SP tlog-checkpoint: the signed tree head, ``origin\\nsize\\nbase64(root)\\n[ext…]``.

Pure parsing and formatting; signatures are the signed-note layer's job (``note.py``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from clearwall.errors import VerificationError
from clearwall.ledger.merkle import HASH_SIZE
from clearwall.ledger.note import open_note, sign_note
from clearwall.ledger.signing import Signer, Verifier


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: origin, tree size, root hash and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The checkpoint body (C2SP tlog-checkpoint, "Note text")."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        lines.extend(self.extensions)
        return "\n".join(lines) + "\n"

    def sign(self, signer: Signer) -> str:
        """The signed note of this checkpoint."""
        return sign_note(self.text(), [signer])


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body; every malformation is a VerificationError naming the line."""
    if not text.endswith("\n"):
        raise VerificationError("checkpoint must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *ext = lines
    if not origin:
        raise VerificationError("checkpoint origin line is empty")
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or (len(size_text) > 1 and size_text[0] == "0")
    ):
        raise VerificationError(f"checkpoint size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("checkpoint root hash is not valid base64") from exc
    if len(root) != HASH_SIZE:
        raise VerificationError(f"checkpoint root hash has {len(root)} bytes, expected 32")
    if any(not e for e in ext):
        raise VerificationError("checkpoint extension lines must not be empty")
    return Checkpoint(origin, int(size_text), root, tuple(ext))


def open_checkpoint(note: str | bytes, verifier: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse it; check the origin when given.

    The origin must equal the key name when ``origin`` is None, as the log signs with a
    key named after its origin.
    """
    text, _ = open_note(note, [verifier])
    cp = parse_checkpoint(text)
    want = verifier.name if origin is None else origin
    if cp.origin != want:
        raise VerificationError(f"checkpoint origin {cp.origin!r} is not {want!r}")
    return cp
