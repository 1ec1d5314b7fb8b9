"""Ed25519 note keys in the C2SP signed-note formats (the ones Go's sumdb/note reads).

Verifier key (``vkey``): ``<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>``.
Signer key (``skey``, the key file): ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>``.
The key id is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key)
(C2SP signed-note, "Signatures" and "Ed25519"). Only ``create_key_file``/``load_signer``
touch the file system; the private key is never printed or logged.

``cryptography`` is imported only by the three Ed25519 operations below, when one is
first used: parsing a key (``[ledger] vkey``, a witness's key in the config) needs only
base64 and SHA-256, and a DNS gateway, which verifies nothing itself
(``control.headcheck``), never holds its 7-8 MiB.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from clearwall.errors import LedgerError, VerificationError

ALG_ED25519 = 0x01  # signed-note signature type byte for Ed25519


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is the Ed25519 signature of ``message`` by ``public_key``
    (RFC 8032, as ``cryptography`` checks it)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` by the key of ``seed``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_public(seed: bytes) -> bytes:
    """The 32-byte Ed25519 public key of the private key ``seed``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def check_key_name(name: str) -> None:
    """A key name is non-empty and has no Unicode spaces and no plus (signed-note)."""
    if not name or "+" in name or any(c.isspace() for c in name):
        raise LedgerError(f"invalid note key name {name!r}: empty, '+' or whitespace")


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> int:
    """The 32-bit key id: SHA-256(name || "\\n" || alg || public key)[:4], big-endian.

    ``alg`` is the signed-note signature type byte (0x01 Ed25519 notes, 0x04 C2SP
    tlog-cosignature Ed25519 cosignatures), so one key never gets the same id twice.
    """
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A note verifier: key name, key id and Ed25519 public key."""

    name: str
    key_id: int
    public_key: bytes

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        return ed25519_verify(self.public_key, signature, message)

    @property
    def vkey(self) -> str:
        """The C2SP vkey text of this verifier."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"


@dataclass(frozen=True, slots=True)
class Signer:
    """A note signer: key name, key id and the Ed25519 private key seed."""

    name: str
    key_id: int
    seed: bytes

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return ed25519_sign(self.seed, message)

    @property
    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier(self.name, self.key_id, ed25519_public(self.seed))

    @property
    def skey(self) -> str:
        """The signer key text (Go's ``note.NewSigner`` format). Keep it secret."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"

    def __repr__(self) -> str:  # never show the seed in logs or tracebacks
        return f"Signer(name={self.name!r}, key_id={self.key_id:08x})"


def generate_signer(name: str, seed: bytes | None = None) -> Signer:
    """A new Ed25519 signer for key ``name`` (random unless ``seed`` is given, for tests)."""
    check_key_name(name)
    if seed is None:
        seed = os.urandom(32)
    if len(seed) != 32:
        raise LedgerError("an Ed25519 seed is 32 bytes")
    public = ed25519_public(seed)
    return Signer(name, key_id(name, public), seed)


def decode_key_bytes(text: str, what: str, alg: int = ALG_ED25519) -> bytes:
    """The 32 key bytes of ``base64(alg || key)``; VerificationError naming ``what``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what}: key is not valid base64") from exc
    if len(raw) != 33 or raw[0] != alg:
        kind = "an Ed25519 note key" if alg == ALG_ED25519 else "an Ed25519 cosigner key"
        got = f"type 0x{raw[0]:02x}, {len(raw) - 1} bytes" if raw else "empty"
        raise VerificationError(f"{what}: not {kind} (type 0x{alg:02x}, 32 bytes; got {got})")
    return raw[1:]


def split_vkey(text: str, alg: int = ALG_ED25519) -> tuple[str, int, bytes]:
    """Name, key id and public key of a vkey of signature type ``alg``, id checked."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or len(parts[1]) != 8:
        raise VerificationError(f"malformed verifier key {text.strip()!r}: want name+id+key")
    name, hex_id, key_text = parts
    try:
        check_key_name(name)
    except LedgerError as exc:
        raise VerificationError(str(exc)) from exc
    try:
        kid = int(hex_id, 16)
    except ValueError as exc:
        raise VerificationError(f"malformed verifier key id {hex_id!r}") from exc
    public = decode_key_bytes(key_text, "verifier key", alg)
    if key_id(name, public, alg) != kid:
        raise VerificationError(f"verifier key id {hex_id} does not match its name and key")
    return name, kid, public


def parse_vkey(text: str) -> Verifier:
    """Parse a vkey, checking that its key id matches its name and key."""
    return Verifier(*split_vkey(text))


def parse_skey(text: str) -> Signer:
    """Parse a signer key text, checking its key id."""
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise LedgerError("malformed signer key file: want PRIVATE+KEY+name+id+key")
    name, hex_id, key_text = parts[2:]
    try:
        seed = decode_key_bytes(key_text, "signer key")
    except VerificationError as exc:
        raise LedgerError(str(exc)) from exc
    signer = generate_signer(name, seed)
    if f"{signer.key_id:08x}" != hex_id.lower():
        raise LedgerError("signer key id does not match its name and key")
    return signer


def create_key_file(path: Path, name: str) -> str:
    """Create the log's signer key file (mode 0600, never overwritten); return its vkey."""
    signer = generate_signer(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise LedgerError(f"key file {path} already exists; refusing to overwrite it") from exc
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(signer.skey + "\n")
    os.chmod(path, 0o600)
    return signer.verifier.vkey


def load_signer(path: Path) -> Signer:
    """Load the signer key file, refusing a file readable by group or others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise LedgerError(f"ledger key file {path} not found (run `clearwall init`)") from exc
    if mode & 0o077:
        raise LedgerError(f"ledger key file {path} is accessible to others; chmod 600 it")
    return parse_skey(text)
