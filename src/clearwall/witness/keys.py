"""The witness's key file: created once (mode 0600, never overwritten), then only read."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from clearwall.errors import LedgerError
from clearwall.ledger.cosignature import Cosigner, generate_cosigner, parse_cosigner_skey


def default_name() -> str:
    """``<host name>/witness``: a schema-less URL-like key name (tlog-cosignature advice)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.getfqdn() or socket.gethostname()) or "localhost"
    return f"{host}/witness"


def load_or_create(path: Path, name: str | None = None) -> tuple[Cosigner, bool]:
    """The cosigner in ``path``, created (mode 0600) with ``name`` when the file is missing.

    Returns the key and whether it was created. A file readable by group or others, or
    one made for another name than ``name``, is refused.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        cosigner = generate_cosigner(name or default_name())
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create(path, name)  # another process created it first
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(cosigner.skey + "\n")
        os.chmod(path, 0o600)
        return cosigner, True
    if mode & 0o077:
        raise LedgerError(f"witness key file {path} is accessible to others; chmod 600 it")
    cosigner = parse_cosigner_skey(path.read_text(encoding="ascii"))
    if name is not None and cosigner.name != name:
        raise LedgerError(
            f"witness key file {path} is for {cosigner.name!r}, not {name!r}; "
            "a witness keeps its name for good (its key id commits to it)"
        )
    return cosigner, False
