"""The log's published checkpoint as any reader finds it: read from the tiles directory
and verified with the log's key alone, without the store.

Kept apart from ``log`` (the writer: sync, tiles, witnesses) so that what only reads and
verifies the checkpoint, such as the short-lived checker a gateway starts before it
reuses a saved snapshot (``control.headcheck``), imports a third of what the writer does.
"""

from __future__ import annotations

from clearwall.config import LedgerConfig
from clearwall.errors import LedgerError
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.signing import Verifier, load_signer, parse_vkey
from clearwall.ledger.tiledir import TileDir


def published_checkpoint(config: LedgerConfig) -> Checkpoint | None:
    """The verified checkpoint in ``config``'s tiles directory, or None when there is
    none: read with the key file alone, without the store (a gateway's start-up check)."""
    note = TileDir(config.tiles_path()).read_checkpoint()
    if note is None:
        return None
    return open_checkpoint(note, ledger_verifier(config), config.origin)


def ledger_verifier(config: LedgerConfig) -> Verifier:
    """The log's verifier: from ``[ledger] vkey`` on a node that does not sign, else
    from the key file (LedgerError when ``[ledger] vkey`` names another key)."""
    if not config.signs():
        return parse_vkey(config.vkey)
    verifier = load_signer(config.key_path()).verifier
    if config.vkey and verifier.vkey != config.vkey:
        raise LedgerError(
            f"[ledger] vkey is not the verifier key of {config.key_path()} "
            f"({verifier.vkey}): one log has one signer"
        )
    return verifier
