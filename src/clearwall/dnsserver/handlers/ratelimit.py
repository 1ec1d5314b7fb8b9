"""Rate limit: a token bucket per client prefix (RRL-style), with slip.

Clients are grouped by /24 (IPv4) or /56 (IPv6) so one host cannot dodge the limit by
hopping addresses, and spoofed floods are capped per network. Over the limit, every
``slip``-th UDP reply is a truncated answer (a real client retries over TCP, which
cannot be spoofed) and the rest are dropped: no amplification. TCP is never limited here,
nor (by default) loopback, which cannot be spoofed from outside the host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from clearwall.config import RateLimitConfig
from clearwall.dnsserver.answer import DROP, Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services

_MAX_BUCKETS = 100_000
SLIPPED = Answer(AnswerKind.TRUNCATED, reason="rate limited, retry over TCP")


class RateLimiter:
    """Token buckets keyed by client prefix; bounded (oldest buckets dropped first)."""

    def __init__(
        self, config: RateLimitConfig, clock: Callable[[], float], next_handler: Handler
    ) -> None:
        self.rate = config.queries_per_second
        self.burst = config.burst
        self.slip = config.slip
        self.v4 = config.ipv4_prefix
        self.v6 = config.ipv6_prefix
        self.clock = clock
        self.exempt_loopback = config.exempt_loopback
        self.next = next_handler
        self._buckets: dict[str, list[float]] = {}  # prefix -> [tokens, last time, slips]
        self._prefix: dict[str, str] = {}
        self._exempt: set[str] = set()

    def prefix(self, host: str) -> str:
        """The client's prefix as text (e.g. "192.0.2.0/24"); memoized."""
        p = self._prefix.get(host)
        if p is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
                bits = self.v4 if ip.version == 4 else self.v6
                p = str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
            except ValueError:
                p = host
            if len(self._prefix) >= _MAX_BUCKETS:
                self._prefix.clear()
            self._prefix[host] = p
        return p

    def __call__(self, ctx: Context) -> Result:
        """Pass the query on while the prefix has tokens; slip or drop otherwise."""
        host = ctx.host
        if ctx.tcp or host in self._exempt:
            return self.next(ctx)
        if self.exempt_loopback and (host.startswith("127.") or host == "::1"):
            if len(self._exempt) < 1024:
                self._exempt.add(host)
            return self.next(ctx)
        key = self.prefix(host)
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                # Drop the oldest half: dicts keep insertion order.
                for old in list(self._buckets)[: _MAX_BUCKETS // 2]:
                    del self._buckets[old]
            bucket = self._buckets[key] = [self.burst, now, 0.0]
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            bucket[0] = tokens if tokens < self.burst else self.burst
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return self.next(ctx)
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            return SLIPPED
        return DROP

    def fast(self, next_step: FastStep | None) -> FastStep | None:
        """Exempt clients go on; a known prefix with a token to spare pays it and goes on.

        Anything else (new prefix, empty bucket: slip or drop) takes the general path, and
        a token taken for a query the steps below leave to the general path is given
        back, so that path counts the query exactly once.
        """
        if next_step is None:
            return None
        exempt = self._exempt
        prefixes = self._prefix
        buckets = self._buckets
        clock = self.clock
        rate = self.rate
        burst = self.burst

        def step(data: bytes, key: bytes, host: str, jurisdiction: str) -> Answer | None:
            if host in exempt:
                return next_step(data, key, host, jurisdiction)
            prefix = prefixes.get(host)
            bucket = buckets.get(prefix) if prefix is not None else None
            if bucket is None:
                return None
            now = clock()
            tokens = bucket[0] + (now - bucket[1]) * rate
            if tokens > burst:
                tokens = burst
            if tokens < 1.0:
                return None
            bucket[0] = tokens - 1.0
            bucket[1] = now
            answer = next_step(data, key, host, jurisdiction)
            if answer is None:
                bucket[0] += 1.0
            return answer

        return step


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Present only when ``[dns.ratelimit] enabled``."""
    assert next_handler is not None
    cfg = services.config.ratelimit
    if not cfg.enabled:
        return None
    return RateLimiter(cfg, services.clock, next_handler)
