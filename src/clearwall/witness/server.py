"""The witness over HTTP: ``POST /add-checkpoint`` and ``GET /<origin hash>/checkpoint``.

The submission and monitoring prefixes of C2SP tlog-witness are both the server's root.
Requests are handled on a worker thread (the database is synchronous); ``/`` says who
the witness is and which logs it follows, for operators and curious readers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from clearwall.ledger.cosignature import Cosigner
from clearwall.witness.protocol import MAX_BODY, Answer, Witness
from clearwall.witness.store import WitnessStore


def _response(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type)


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    store: WitnessStore, cosigner: Cosigner, clock: Callable[[], float] = time.time
) -> Starlette:
    """The witness web app over ``store``, cosigning with ``cosigner``."""
    witness = Witness(store, cosigner, clock)

    async def add_checkpoint(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return PlainTextResponse(f"request body over {MAX_BODY} bytes\n", status_code=413)
        return _response(await run_in_threadpool(witness.add_checkpoint, body))

    async def latest(request: Request) -> Response:
        origin_hash = str(request.path_params["origin_hash"])
        return _response(await run_in_threadpool(witness.latest, origin_hash))

    async def index(_: Request) -> Response:
        def text() -> str:
            lines = [
                "clearwall witness (C2SP tlog-witness)",
                f"verifier key: {cosigner.verifier.vkey}",
                "logs witnessed (origin, cosigned size):",
            ]
            lines += [f"  {log.origin} {log.size}" for log in store.logs()]
            return "\n".join(lines) + "\n"

        return PlainTextResponse(await run_in_threadpool(text))

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{origin_hash:str}/checkpoint", latest, methods=["GET"]),
            Route("/", index, methods=["GET"]),
        ]
    )
