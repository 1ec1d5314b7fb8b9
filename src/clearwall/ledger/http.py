"""The log over HTTP: C2SP tlog-tiles endpoints under ``/log/`` and a JSON proof API.

``/log/checkpoint``, ``/log/tile/<L>/<N>[.p/<W>]`` and ``/log/tile/entries/<N>[.p/<W>]``
and ``/log/rules/<order>-<digest>.txt`` are served exactly as the files the log writes
(C2SP tlog-tiles, "Endpoints"; rule files are clearwall's own): full tiles
never change, so they are cacheable forever; the checkpoint changes and must be revalidated.
The JSON API serves RFC 9162 proofs and per-name bundles (schema in docs/ledger.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from clearwall.errors import ClearwallError, InvalidName, TileError, VerificationError
from clearwall.ledger import proofs, tiles
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.prover import NameProver

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "no-cache"  # revalidate: the checkpoint moves with every write
_RULE_FILE = re.compile(r"([0-9]{1,18})-([0-9a-f]{64})\.txt")


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def log_router(tlog: TransparencyLog, prefix: str = "/log") -> APIRouter:
    """An APIRouter serving ``tlog``'s checkpoint, tiles and proofs under ``prefix``."""

    def recover() -> None:
        # Publish whatever a crash left committed but untiled (issue 4, "Bad input").
        try:
            tlog.sync()
        except ClearwallError as exc:
            log.warning("log sync at start failed: %s", exc)

    router = APIRouter(prefix=prefix, tags=["log"], on_startup=[recover])
    prover = NameProver(tlog)

    def current() -> tuple[str, Any]:
        try:
            note = tlog.checkpoint_note()
            return note, open_checkpoint(note, tlog.verifier, tlog.config.origin)
        except ClearwallError as exc:
            raise HTTPException(503, f"log unavailable: {exc}") from exc

    @router.get("/checkpoint")
    def checkpoint() -> Response:
        """The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)."""
        note, _ = current()
        return Response(
            note,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": CHECKPOINT_CACHE},
        )

    @router.get("/tile/{path:path}")
    def tile(path: str) -> Response:
        """A hash tile or entry bundle, byte for byte as published."""
        try:
            tid = tiles.parse_tile_path("tile/" + path)
        except TileError as exc:
            raise HTTPException(404, str(exc)) from exc
        file = tlog.dir.path(tid)
        try:
            data = file.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise HTTPException(404, f"no tile {tid.path}") from exc
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Cache-Control": IMMUTABLE},
        )

    def size_arg(size: int | None, published: int) -> int:
        if size is None:
            return published
        if not 0 < size <= published:
            raise HTTPException(400, f"size must be in 1..{published} (the published size)")
        return size

    @router.get("/rules/{name}")
    def rule_file(name: str) -> Response:
        """An order version's published rule file (``<order>-<digest>.txt``): what a
        mirror adopts and a verifier hashes; immutable, as its name holds its digest."""
        match = _RULE_FILE.fullmatch(name)
        if match is None:
            raise HTTPException(404, f"no rule file {name!r}")
        file = tlog.rule_file(int(match[1]), match[2])
        try:
            data = file.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise HTTPException(404, f"no rule file {name}") from exc
        return Response(
            data, media_type="text/plain; charset=utf-8", headers={"Cache-Control": IMMUTABLE}
        )

    @router.get("/proof/inclusion")
    def inclusion(
        index: int = Query(..., ge=0), size: int | None = Query(None, ge=1)
    ) -> JSONResponse:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` (default: latest)."""
        _, cp = current()
        n = size_arg(size, cp.size)
        if index >= n:
            raise HTTPException(400, f"index {index} is not in a tree of size {n}")
        try:
            reader = tlog.reader(n)
            proof = proofs.inclusion_proof(reader, index, n)
            body = {
                "index": index,
                "size": n,
                "root": _b64(proofs.tree_hash(reader, n)),
                "leaf_hash": _b64(reader.hash_at(0, index)),
                "entry": tlog.entry(index, n).decode("utf-8"),
                "proof": [_b64(h) for h in proof],
            }
        except ClearwallError as exc:
            raise HTTPException(503, str(exc)) from exc
        return JSONResponse(body)

    @router.get("/proof/consistency")
    def consistency(
        from_: int = Query(..., alias="from", ge=0), to: int | None = Query(None, ge=1)
    ) -> JSONResponse:
        """RFC 9162 consistency proof that tree ``from`` is a prefix of tree ``to``."""
        _, cp = current()
        n = size_arg(to, cp.size)
        if from_ > n:
            raise HTTPException(400, f"from ({from_}) is larger than to ({n})")
        try:
            reader = tlog.reader(n)
            body = {
                "from": from_,
                "to": n,
                "from_root": _b64(proofs.tree_hash(reader, from_)),
                "to_root": _b64(proofs.tree_hash(reader, n)),
                "proof": [_b64(h) for h in proofs.consistency_proof(reader, from_, n)],
            }
        except ClearwallError as exc:
            raise HTTPException(503, str(exc)) from exc
        return JSONResponse(body)

    @router.get("/proof/name/{name}")
    def name_proof(
        name: str,
        jurisdiction: str = Query(..., min_length=1),
        at: str | None = Query(
            None, description="ISO 8601 time the bundle speaks for (default: now; UTC if naive)"
        ),
    ) -> JSONResponse:
        """The per-name proof bundle (``clearwall-name-proof/v1``, see docs/ledger.md)."""
        when: dt.datetime | None = None
        if at:
            try:
                when = dt.datetime.fromisoformat(at)
            except ValueError as exc:
                raise HTTPException(400, f"at: not an ISO 8601 time: {at!r}") from exc
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
        try:
            bundle = prover.prove(name, jurisdiction, when)
        except InvalidName as exc:
            raise HTTPException(400, str(exc)) from exc
        except (VerificationError, ClearwallError) as exc:
            raise HTTPException(503, str(exc)) from exc
        return JSONResponse(bundle)

    return router
