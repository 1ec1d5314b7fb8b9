"""The log's published checkpoint as any reader finds it: read from the tiles directory
and verified with the log's key alone, without the store.

Kept apart from ``log`` (the writer: sync, tiles, witnesses) so that what only reads and
verifies the checkpoint, such as the short-lived checker a gateway starts before it
reuses a saved snapshot (``control.headcheck``), imports a fraction of what the writer
does: the functions over plain paths and strings need not even load the config module.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.errors import LedgerError
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.signing import Verifier, load_signer, parse_vkey
from clearwall.ledger.tiledir import TileDir

if TYPE_CHECKING:
    from clearwall.config import LedgerConfig


def published_checkpoint(config: LedgerConfig) -> Checkpoint | None:
    """The verified checkpoint in ``config``'s tiles directory, or None when there is
    none: read with the key file alone, without the store (a gateway's start-up check)."""
    return checkpoint_in(config.tiles_path(), config.origin, lambda: ledger_verifier(config))


def checkpoint_in(tiles: Path, origin: str, verifier: Callable[[], Verifier]) -> Checkpoint | None:
    """The checkpoint in the tiles directory ``tiles``, verified with ``verifier()`` and
    of origin ``origin``, or None when none was published (then no key is needed, nor
    read). VerificationError (a LedgerError) when it does not verify."""
    note = TileDir(tiles).read_checkpoint()
    if note is None:
        return None
    return open_checkpoint(note, verifier(), origin)


def ledger_verifier(config: LedgerConfig) -> Verifier:
    """The log's verifier: from ``[ledger] vkey`` on a node that does not sign, else
    from the key file (LedgerError when ``[ledger] vkey`` names another key)."""
    return key_verifier(config.key_path(), config.vkey, config.signs())


def key_verifier(key_file: Path, vkey: str, signs: bool) -> Verifier:
    """``ledger_verifier`` over its parts: ``vkey``'s verifier on a node that does not
    sign (``signs``, as ``LedgerConfig.signs`` says), else the key file's, which
    ``vkey``, when set, must name."""
    if not signs:
        return parse_vkey(vkey)
    verifier = load_signer(key_file).verifier
    if vkey and verifier.vkey != vkey:
        raise LedgerError(
            f"[ledger] vkey is not the verifier key of {key_file} "
            f"({verifier.vkey}): one log has one signer"
        )
    return verifier
