"""Web hardening: security headers and CSP, CSRF tokens, appeal rate limiting."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

# Everything the app serves comes from the app itself: no inline script, no inline style,
# no third-party origin. Charts are inline <svg> elements, which CSP does not restrict;
# their colours come from classes in the local stylesheet.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    "script-src 'self'; "
    "style-src 'self'; "
    "img-src 'self' data:; "
    "connect-src 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'; "
    "base-uri 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}


class SecurityHeadersMiddleware(BaseHTTPMiddleware):
    """Adds the security headers to every response, errors and block pages included."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Run the request and stamp the headers on whatever comes back."""
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ (timing-safe)."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


CSRF_COOKIE = "cw_csrf"
CSRF_FIELD = "csrf_token"


class CSRFProtector:
    """Double-submit CSRF protection with a signed token.

    The browser holds a random value in a SameSite=Strict cookie; each form carries an
    HMAC of that value under a server secret. A cross-site form can neither read the
    cookie nor forge the HMAC, so a POST is accepted only when both agree.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        """Use ``secret`` (or a fresh random one) to sign form tokens."""
        self._secret = secret or secrets.token_bytes(32)

    def cookie_value(self, request: Request) -> tuple[str, bool]:
        """The browser's CSRF cookie value, and whether it must be (re)set on the response."""
        value = request.cookies.get(CSRF_COOKIE, "")
        if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum():
            return value, False
        return secrets.token_urlsafe(32), True

    def form_token(self, cookie: str) -> str:
        """The token a form embeds for this cookie value."""
        return hmac.new(self._secret, cookie.encode("ascii"), hashlib.sha256).hexdigest()

    def verify(self, request: Request, submitted: str) -> bool:
        """True when the submitted form token matches the request's cookie."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not submitted:
            return False
        return constant_time_equal(self.form_token(cookie), submitted)

    @staticmethod
    def set_cookie(response: Response, value: str, secure: bool) -> None:
        """Attach the CSRF cookie to a response (HttpOnly, SameSite=Strict)."""
        response.set_cookie(
            CSRF_COOKIE, value, httponly=True, samesite="strict", secure=secure, path="/"
        )


def client_prefix(host: str | None) -> str:
    """The client's network prefix (/24 or /56): rate limits never key on a full address."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class SubmissionLimiter:
    """Public form submissions (appeals) per client prefix: a token bucket of ``burst``
    actions, refilled at ``per_hour``/hour. Not the DNS rate limiter
    (``dnsserver.handlers.ratelimit``), which limits queries."""

    burst: float = 5.0
    per_hour: float = 20.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, key: str) -> bool:
        """Take one token for ``key``; False when the bucket is empty."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            rate = self.per_hour / 3600.0
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
            if len(self._buckets) > 100_000:  # bound memory under a spray of prefixes
                self._buckets.clear()
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True
