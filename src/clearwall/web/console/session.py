"""Console sessions: sign in with an API token, a session cookie, CSRF on every form.

The token typed into the sign-in form is checked by the API's own ``TokenStore``; the
session then keeps only the token's id, which is looked up again (revoked: signed out)
on every request. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over TLS
and expires after ``SESSION_SECONDS``; sessions live in this process's memory, so a
restart signs everyone out. Tokens are never shown again and never logged.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from clearwall.store.records import TokenRole
from clearwall.web.auth import Principal, principal_for_token
from clearwall.web.context import WebContext

SESSION_COOKIE = "cw_session"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000

router = APIRouter()


@dataclass
class Sessions:
    """Open sessions by the SHA-256 of their cookie value: token id and expiry time."""

    clock: Callable[[], float] = time.time
    _open: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _key(value: str) -> str:
        return hashlib.sha256(value.encode("utf-8")).hexdigest()

    def open(self, token_id: int) -> str:
        """A new session for ``token_id``; returns the cookie value (shown to no one)."""
        value = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            if len(self._open) >= MAX_SESSIONS:
                self._open = {k: v for k, v in self._open.items() if v[1] > now}
            self._open[self._key(value)] = (token_id, now + SESSION_SECONDS)
        return value

    def token_of(self, value: str) -> int | None:
        """The token id of a live session, or None (unknown or expired)."""
        if not value or len(value) > 100:
            return None
        key = self._key(value)
        with self._lock:
            found = self._open.get(key)
            if found is None:
                return None
            if found[1] <= self.clock():
                del self._open[key]
                return None
            return found[0]

    def close(self, value: str) -> None:
        """End a session (sign-out)."""
        with self._lock:
            self._open.pop(self._key(value), None)


class SignInRequired(Exception):
    """Raised by ``require`` on a console page without a live session."""


def install(app: FastAPI) -> None:
    """Give the app a session store and send signed-out visitors to the sign-in form."""
    app.state.console_sessions = Sessions()

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/console", status_code=303)

    app.add_exception_handler(SignInRequired, to_sign_in)


def principal(request: Request) -> Principal | None:
    """The signed-in principal, or None; a revoked token ends its sessions at once."""
    sessions: Sessions = request.app.state.console_sessions
    value = request.cookies.get(SESSION_COOKIE, "")
    token_id = sessions.token_of(value)
    if token_id is None:
        return None
    ctx: WebContext = request.app.state.ctx
    token = ctx.tokens.active(token_id)
    if token is None:
        sessions.close(value)
        return None
    return principal_for_token(ctx, token)


def require(request: Request) -> Principal:
    """The signed-in principal; signed-out visitors are redirected to the sign-in form."""
    who = principal(request)
    if who is None:
        raise SignInRequired()
    return who


def check_csrf(request: Request, token: str) -> None:
    """Refuse a form whose CSRF token does not match the browser's cookie (403)."""
    ctx: WebContext = request.app.state.ctx
    if not ctx.csrf.verify(request, token):
        raise HTTPException(
            403, "Your session expired or the form came from another site. Please try again."
        )


def render(
    request: Request,
    name: str,
    values: dict[str, Any],
    who: Principal | None,
    status: int = 200,
) -> Response:
    """A console page: the signed-in principal, a CSRF token for its forms, no caching."""
    ctx: WebContext = request.app.state.ctx
    cookie, new = ctx.csrf.cookie_value(request)
    values.setdefault("nav", "")
    values.setdefault("notice", request.query_params.get("done", "")[:200])
    values["who"] = who
    values["csrf_token"] = ctx.csrf.form_token(cookie)
    values["query_log_on"] = ctx.config.logging.query_log
    response = ctx.templates.TemplateResponse(request, name, values, status_code=status)
    if new:
        ctx.csrf.set_cookie(response, cookie, secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return response


def done(path: str, message: str) -> RedirectResponse:
    """Back to a console page after a POST, with a one-line notice shown there."""
    return RedirectResponse(
        f"{path}?done={urllib.parse.quote_plus(message[:200])}", status_code=303
    )


def role_label(who: Principal) -> str:
    """How the header names the signed-in role."""
    if who.role is TokenRole.AUTHORITY and who.authority is not None:
        return f"{who.authority.name} ({who.authority.jurisdiction.upper()})"
    return who.role.value


def sign_in_page(request: Request, error: str = "", status: int = 200) -> Response:
    """The sign-in form."""
    return render(request, "console/signin.html", {"error": error}, None, status)


@router.post("/sign-in")
def sign_in(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    token: str = Form("", max_length=300),
) -> Response:
    """Exchange an API token for a session cookie (the token is never echoed)."""
    check_csrf(request, csrf_token)
    ctx: WebContext = request.app.state.ctx
    found = ctx.tokens.authenticate(token.strip())
    if found is None:
        return sign_in_page(request, "That token is not valid, or it was revoked.", 401)
    value = request.app.state.console_sessions.open(found.id)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
        path="/console",
    )
    return response


@router.post("/sign-out")
def sign_out(request: Request, csrf_token: str = Form("", max_length=200)) -> Response:
    """End the session and forget the cookie."""
    check_csrf(request, csrf_token)
    request.app.state.console_sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response
