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
from dataclasses import dataclass, field
from typing import TypedDict

from clearwall.config import RateLimitConfig
from clearwall.dnsserver.answer import DROP, Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services

_MAX_BUCKETS = 100_000
SLIPPED = Answer(AnswerKind.TRUNCATED, reason="rate limited, retry over TCP")

# A bucket is a list of three floats, ``[tokens, last, slips]``: the tokens left, the
# clock reading they were counted at, and the queries refused so far (every ``slip``-th
# is slipped). A list, updated in place, because the fused C paths read and write it
# with ``PyList_*`` calls (``_ratelimit.h``): keep the type and these positions.
TOKENS, LAST, SLIPS = 0, 1, 2
Bucket = list[float]


def new_bucket(burst: float, now: float) -> Bucket:
    """A full bucket for a prefix first seen at ``now``."""
    return [burst, now, 0.0]


class LimiterFields(TypedDict):
    """The fused C paths' rate-limiter arguments (``FusedPath``, ``MissPath``): all None
    (and zero) without a limiter (``NO_LIMITER``)."""

    exempt: set[str] | None
    prefixes: dict[str, str] | None
    buckets: dict[str, Bucket] | None
    limiter_clock: Callable[[], float] | None
    rate: float
    burst: float


@dataclass(frozen=True)
class LimiterState:
    """What the rate limiter's fast steps share with its general path: the Python step
    (``RateLimiter.fast``) and the C steps of the fused paths (``_ratelimit.h``'s
    ``Limiter``, given ``c_fields``). The containers are updated in place and never
    replaced, since the C paths hold them.

    A query from an exempt host passes; one from a host whose prefix and bucket exist
    pays a token when one is left (after the refill ``rate`` x elapsed, capped at
    ``burst``), and anything else (a new prefix, an empty bucket) takes the general path,
    which creates buckets and slips or drops.
    """

    clock: Callable[[], float]
    rate: float
    burst: float
    exempt: set[str] = field(default_factory=set)  # hosts passed without a bucket
    prefixes: dict[str, str] = field(default_factory=dict)  # host -> its prefix (memo)
    buckets: dict[str, Bucket] = field(default_factory=dict)  # prefix -> bucket

    def c_fields(self) -> LimiterFields:
        """The fused C paths' limiter arguments (``FusedPath``, ``MissPath``)."""
        return {
            "exempt": self.exempt,
            "prefixes": self.prefixes,
            "buckets": self.buckets,
            "limiter_clock": self.clock,
            "rate": float(self.rate),
            "burst": float(self.burst),
        }


# The fused C paths' limiter arguments when the chain has no rate limiter.
NO_LIMITER: LimiterFields = {
    "exempt": None,
    "prefixes": None,
    "buckets": None,
    "limiter_clock": None,
    "rate": 0.0,
    "burst": 0.0,
}


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
        self.fast_state = LimiterState(clock, self.rate, self.burst)

    def prefix(self, host: str) -> str:
        """The client's prefix as text (e.g. "192.0.2.0/24"); memoized."""
        prefixes = self.fast_state.prefixes
        p = prefixes.get(host)
        if p is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
                bits = self.v4 if ip.version == 4 else self.v6
                p = str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
            except ValueError:
                p = host
            if len(prefixes) >= _MAX_BUCKETS:
                prefixes.clear()
            prefixes[host] = p
        return p

    def __call__(self, ctx: Context) -> Result:
        """Pass the query on while the prefix has tokens; slip or drop otherwise."""
        host = ctx.host
        state = self.fast_state
        if ctx.tcp or host in state.exempt:
            return self.next(ctx)
        if self.exempt_loopback and (host.startswith("127.") or host == "::1"):
            if len(state.exempt) < 1024:
                state.exempt.add(host)
            return self.next(ctx)
        key = self.prefix(host)
        now = self.clock()
        buckets = state.buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= _MAX_BUCKETS:
                # Drop the oldest half: dicts keep insertion order.
                for old in list(buckets)[: _MAX_BUCKETS // 2]:
                    del buckets[old]
            bucket = buckets[key] = new_bucket(self.burst, now)
        else:
            tokens = bucket[TOKENS] + (now - bucket[LAST]) * self.rate
            bucket[TOKENS] = tokens if tokens < self.burst else self.burst
            bucket[LAST] = now
        if bucket[TOKENS] >= 1.0:
            bucket[TOKENS] -= 1.0
            return self.next(ctx)
        bucket[SLIPS] += 1
        if self.slip and bucket[SLIPS] % self.slip == 0:
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
        state = self.fast_state
        exempt = state.exempt
        prefixes = state.prefixes
        buckets = state.buckets
        clock = state.clock
        rate = state.rate
        burst = state.burst

        def step(data: bytes, key: bytes, host: str, jurisdiction: str) -> Answer | None:
            if host in exempt:
                return next_step(data, key, host, jurisdiction)
            prefix = prefixes.get(host)
            bucket = buckets.get(prefix) if prefix is not None else None
            if bucket is None:
                return None
            now = clock()
            # Literal positions (TOKENS, LAST): a constant costs less than a global here.
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
