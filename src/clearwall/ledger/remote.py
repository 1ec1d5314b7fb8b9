"""Reading a published log from anywhere: a tiles directory or an HTTP(S) ``/log`` prefix.

What a third party runs: fetch the checkpoint, verify its signature with the published
vkey, fetch every entry bundle and hash tile (C2SP tlog-tiles paths), recompute the tree
from the entries and compare it with the signed root and the served tiles. The fetching
is the I/O edge; the checks reuse the pure cores.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clearwall.errors import LedgerError, TileError, VerificationError
from clearwall.ledger import tiles
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.cosignature import VALID, CosignatureReport, check_cosignatures
from clearwall.ledger.merkle import HASH_SIZE, MemoryTree, leaf_hash
from clearwall.ledger.signing import Verifier
from clearwall.ledger.tiles import TileID


class LogSource:
    """Fetches published files by their path under the log prefix."""

    def __init__(self, where: str) -> None:
        """``where`` is a directory or an ``http(s)://…/log`` URL."""
        self.where = where.rstrip("/")
        self.remote = where.startswith(("http://", "https://"))
        self._client = None
        if self.remote:
            import httpx

            self._client = httpx.Client(timeout=30.0, follow_redirects=True)

    def get(self, path: str) -> bytes:
        """The bytes at ``path``; LedgerError when it cannot be fetched."""
        if self._client is not None:
            url = f"{self.where}/{path}"
            try:
                resp = self._client.get(url)
            except Exception as exc:  # httpx.HTTPError and socket errors alike
                raise LedgerError(f"cannot fetch {url}: {exc}") from exc
            if resp.status_code != 200:
                raise TileError(f"{url}: HTTP {resp.status_code}")
            return resp.content
        try:
            return (Path(self.where) / path).read_bytes()
        except OSError as exc:
            raise TileError(f"{path}: {exc.strerror or exc}") from exc

    def tile(self, tile: TileID) -> bytes:
        """A tile; a missing partial tile is cut from the full one (tlog-tiles clients do)."""
        try:
            return self.get(tile.path)
        except TileError:
            if tile.full:
                raise
            data = self.get(TileID(tile.level, tile.index).path)
            if tile.level == tiles.ENTRIES:
                return tiles.encode_bundle(tiles.decode_bundle(data, 256)[: tile.width])
            return data[: tile.width * HASH_SIZE]


@dataclass
class RemoteLog:
    """A fetched and verified log: its checkpoint and every entry."""

    note: str
    checkpoint: Checkpoint
    entries: list[bytes] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def fetch_and_verify(where: str, verifier: Verifier, check_tiles: bool = True) -> RemoteLog:
    """Fetch the log at ``where`` and verify it; problems are listed, not raised.

    Raises VerificationError only when the checkpoint itself is not signed by ``verifier``.
    """
    src = LogSource(where)
    note = src.get("checkpoint").decode("utf-8", "replace")
    cp = open_checkpoint(note, verifier)
    log = RemoteLog(note, cp)
    packed = bytearray()
    for n in range((cp.size + 255) // 256):
        tile = tiles.tile_for(cp.size, tiles.ENTRIES, n)
        try:
            bundle = tiles.decode_bundle(src.tile(tile), tile.width)
        except TileError as exc:
            log.problems.append(f"entry bundle {tile.path}: {exc}")
            bundle = [b""] * tile.width
        log.entries.extend(bundle)
        for e in bundle:
            packed += leaf_hash(e)
    tree = MemoryTree(packed)
    if tree.root() != cp.root:
        log.problems.append("the entries do not hash to the signed checkpoint root")
    if check_tiles:
        level = 0
        while tiles.row_size(cp.size, level) > 0:
            for n in range((tiles.row_size(cp.size, level) + 255) // 256):
                tile = tiles.tile_for(cp.size, level, n)
                off = n * 256 * HASH_SIZE
                want = bytes(tree.rows[8 * level][off : off + tile.width * HASH_SIZE])
                try:
                    if src.tile(tile) != want:
                        log.problems.append(f"tile {tile.path}: differs from the entries")
                except TileError as exc:
                    log.problems.append(f"tile {tile.path}: {exc}")
            level += 1
    return log


def verified_entries(where: str, verifier: Verifier) -> list[tuple[int, bytes]]:
    """Every entry of the published log, after checking they hash to the signed root."""
    log = fetch_and_verify(where, verifier, check_tiles=False)
    if log.problems:
        raise VerificationError(f"log at {where}: {log.problems[0]}")
    return list(enumerate(log.entries))


def witness_conflicts(
    note: str,
    log_verifier: Verifier,
    report: CosignatureReport,
    urls: Mapping[str, str],
    timeout: float = 10.0,
) -> list[str]:
    """Ask each witness that did not cosign ``note`` which checkpoint it holds; say why.

    Uses the tlog-witness monitoring endpoint ``GET <url>/<sha256(origin) hex>/checkpoint``.
    The answer must carry the log's signature and the witness's cosignature, so a tree of
    the same size with another root is proof that the log signed two histories (a fork).
    """
    import httpx

    cp = report.checkpoint
    digest = hashlib.sha256(cp.origin.encode()).hexdigest()
    out: list[str] = []
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for result in report.results:
            w = result.witness
            url = urls.get(w.vkey)
            if result.status == VALID or url is None:
                continue
            where = f"{url}/{digest}/checkpoint"
            try:
                resp = client.get(where)
            except httpx.HTTPError as exc:
                out.append(f"{w.name}: cannot ask it ({type(exc).__name__}: {exc})")
                continue
            if resp.status_code == 404:
                out.append(f"{w.name} has cosigned no checkpoint of {cp.origin}")
                continue
            if resp.status_code != 200:
                out.append(f"{w.name}: {where} answered HTTP {resp.status_code}")
                continue
            try:
                theirs = check_cosignatures(resp.text, log_verifier, [w], 1)
            except VerificationError as exc:
                out.append(f"{w.name} serves a checkpoint the log did not sign: {exc}")
                continue
            if not theirs.ok:
                out.append(f"{w.name} serves a checkpoint without its own valid cosignature")
                continue
            held, when = theirs.checkpoint, theirs.results[0].timestamp
            mine, other = _b64(cp.root), _b64(held.root)
            if held.size == cp.size and held.root != cp.root:
                out.append(
                    f"FORK: {w.name} cosigned another tree of the same size {cp.size} at "
                    f"{when} (root {other}; this checkpoint's root is {mine}): the log signed "
                    "two different histories and showed them to different readers"
                )
            elif held.size > cp.size:
                out.append(
                    f"{w.name} has cosigned size {held.size} (root {other}) but not this "
                    f"checkpoint of size {cp.size}: unless the log proves {cp.size} is a "
                    "prefix of it, the log forked"
                )
            elif held.size < cp.size:
                out.append(
                    f"{w.name} has cosigned only up to size {held.size}: it lags, or was "
                    "never shown this checkpoint"
                )
            else:
                out.append(f"{w.name} cosigned this very tree at {when}; the line was not attached")
    return out


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()
