"""TSIG keys of the primary (RFC 8945): one ``name hmac-sha256 base64-secret`` per line.

The file is the primary's keyring and the source of the secrets ``clearwall fleet
config --tsig NAME`` prints for a secondary. It is created with mode 0600; a secret is
never logged. Only HMAC-SHA256 is accepted: every resolver we feed speaks it, and one
algorithm leaves nothing to negotiate down.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from clearwall.config import XfrConfig
from clearwall.errors import ConfigError

ALGORITHM = "hmac-sha256"
SECRET_BYTES = 32  # RFC 8945 section 6: at least the hash's output length


@dataclass(frozen=True)
class TsigKey:
    """One shared secret: its name, algorithm and base64 text (as resolvers' configs want)."""

    name: str
    secret: str
    algorithm: str = ALGORITHM

    def key(self) -> dns.tsig.Key:
        """The dnspython key for signing and validating."""
        return dns.tsig.Key(self.name, self.secret, self.algorithm)


def _check_name(name: str, where: str) -> str:
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise ConfigError(f"{where}: invalid key name {name!r}: {exc}") from exc
    if not name or any(c.isspace() for c in name):
        raise ConfigError(f"{where}: invalid key name {name!r}")
    return name.rstrip(".").lower()


def load_keys(path: Path) -> dict[str, TsigKey]:
    """The keys in ``path`` by name (none when the file does not exist); ConfigError names
    the file and line of anything malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"[xfr] keys_file {path}: {exc.strerror or exc}") from exc
    keys: dict[str, TsigKey] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) != 3:
            raise ConfigError(f"{where}: expected 'name {ALGORITHM} base64-secret'")
        name, algorithm, secret = fields
        name = _check_name(name, where)
        if algorithm.lower().rstrip(".") != ALGORITHM:
            raise ConfigError(f"{where}: algorithm {algorithm!r} not supported, use {ALGORITHM}")
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"{where}: the secret is not base64") from exc
        if len(raw) < 16:
            raise ConfigError(f"{where}: the secret is shorter than 16 bytes")
        if name in keys:
            raise ConfigError(f"{where}: key {name!r} given twice")
        keys[name] = TsigKey(name, secret)
    return keys


def primary_keys(xfr: XfrConfig) -> dict[str, TsigKey]:
    """The keys the primary checks requests with and signs NOTIFY with: those in ``[xfr]
    keys_file`` (``xfr`` resolved for its store by ``clearwall.layout``), none when there
    is no such file. ConfigError names the option when a secondary names a key that is
    not there, or when keys are named and the store has no key file (PostgreSQL without
    ``keys_file``)."""
    named = [s for s in xfr.secondaries if s.key]
    if xfr.keys_file is None and not named:
        return {}  # no place for keys and none wanted: the primary admits by address
    path = xfr.keys_path()
    keys = load_keys(path)
    for secondary in named:
        if secondary.key not in keys:
            raise ConfigError(
                f"[xfr] secondaries: {secondary}: no key {secondary.key!r} in {path} "
                f"(`clearwall fleet key {secondary.key}` creates it)"
            )
    return keys


def keyring(keys: dict[str, TsigKey]) -> dict[dns.name.Name, dns.tsig.Key]:
    """The keys as a dnspython keyring (absolute names)."""
    return {dns.name.from_text(k.name): k.key() for k in keys.values()}


def add_key(path: Path, name: str) -> tuple[TsigKey, bool]:
    """The key ``name`` from ``path``, created with a fresh random secret (and the file
    with mode 0600) when absent; True when it was created."""
    path = Path(path)
    name = _check_name(name, str(path))
    keys = load_keys(path)
    if name in keys:
        return keys[name], False
    key = TsigKey(name, base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(f"{key.name} {key.algorithm} {key.secret}\n")
        out.flush()
        os.fsync(out.fileno())
    return key, True
