"""Request body limits per route, enforced before any route, authentication or parsing runs.

uvicorn limits no request body, and FastAPI reads a route's whole body (then parses it)
before the route's dependencies authenticate the caller: a 100 MB body without any
token used to cost the process its size several times over before the 401. This pure
ASGI middleware sits outside every route and counts the body as the route reads it:

- every route takes at most ``BODY_LIMIT`` (64 KiB: JSON documents and forms), unless
  its endpoint is marked with ``body_limit(size)`` (the rules upload: ``UPLOAD_LIMIT``);
- a ``Content-Length`` over the route's limit is refused at the route's first read,
  before a byte of the body is read; a body without one (chunked) is refused as soon as
  the bytes read pass the limit; either way the answer is 413 with the limit in its
  message;
- a body that may be larger than ``BODY_LIMIT`` (declared so, or chunked) is read only
  for a caller whose bearer token is valid: anyone else gets the route's own 401 first.

The limit is enforced where the body is read, so a route that never reads its body
costs nothing (uvicorn stops reading a body nobody consumes after 64 KiB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clearwall.web.security import SECURITY_HEADERS

BODY_LIMIT = 64 * 1024
# Publishing or amending an order carries its list text (``rules``: up to 50 million
# characters of a domain list, a little more once JSON-escaped).
UPLOAD_LIMIT = 64 * 1024 * 1024

_Endpoint = TypeVar("_Endpoint", bound=Callable[..., object])


def body_limit(size: int) -> Callable[[_Endpoint], _Endpoint]:
    """Let a route's endpoint take request bodies up to ``size`` bytes.

    Bodies over ``BODY_LIMIT`` are then read only from callers with a valid bearer token.
    """

    def mark(endpoint: _Endpoint) -> _Endpoint:
        endpoint.__clearwall_body_limit__ = size  # type: ignore[attr-defined]
        return endpoint

    return mark


def size_text(size: int) -> str:
    """A byte count for people: ``64 KiB``, ``64 MiB``, ``100 bytes``."""
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


class BodyTooLarge(HTTPException):
    """413: the request body passes the route's limit (the message names the limit)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body too large: this endpoint accepts at most {size_text(limit)}"
        )


Authenticate = Callable[[str | None], object]
"""Checks an ``Authorization`` header value; raises the route's 401 ``HTTPException``."""


class BodyLimitMiddleware:
    """The pure ASGI middleware described in the module docstring.

    A route's limit is read when the route first reads its body: by then the router has
    put the matched endpoint in the (shared) ASGI scope. ``authenticate`` is the API's
    token check, run in a worker thread (it reads the store) before a large body is read.
    """

    def __init__(
        self, app: ASGIApp, *, authenticate: Authenticate, default: int = BODY_LIMIT
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.default = default

    def limit_for(self, scope: Scope) -> int:
        """The body limit of the endpoint the router matched for ``scope``."""
        limit = getattr(scope.get("endpoint"), "__clearwall_body_limit__", None)
        return limit if isinstance(limit, int) else self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a ``receive`` that enforces the route's body limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = _content_length(headers)
        read = 0
        limit = -1  # not known before the route's first read
        refusal: HTTPException | None = None
        started = False

        async def limited() -> Message:
            nonlocal read, limit, refusal
            try:
                if limit < 0:  # the route's first read: nothing of the body is read yet
                    limit = self.limit_for(scope)
                    if limit > self.default and (length is None or length > self.default):
                        await run_in_threadpool(self.authenticate, headers.get("authorization"))
                    if length is not None and length > limit:
                        raise BodyTooLarge(limit)
                message = await receive()
                if message["type"] == "http.request":
                    read += len(message.get("body", b""))
                    if read > limit:  # a chunked body, or one longer than it said
                        raise BodyTooLarge(limit)
            except HTTPException as exc:
                refusal = exc
                raise
            return message

        async def watched(message: Message) -> None:
            # Whatever the app makes of the exception raised in its read (FastAPI turns
            # an error while reading a body into a 400, and BaseHTTPMiddleware wraps it
            # in an ExceptionGroup), the refusal is the answer: the app's is dropped.
            nonlocal started
            if refusal is None or started:
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, limited, watched)
        except Exception:
            if refusal is None or started:
                raise
        if refusal is not None and not started:
            await _answer(refusal, scope, send)


async def _answer(exc: HTTPException, scope: Scope, send: Send) -> None:
    """Send a refusal as the API's errors look: ``{"detail": ...}``, with the app's
    security headers (this middleware answers outside the one that adds them)."""
    response = JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Cache-Control"] = "no-store"
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    """The ``receive`` of a refusal: the body is never read."""
    return {"type": "http.disconnect"}


def _content_length(headers: Headers) -> int | None:
    """The declared body size; None when absent (the server refuses malformed values)."""
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
