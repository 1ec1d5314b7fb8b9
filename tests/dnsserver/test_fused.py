"""The fused paths' declaration: the prefix beside CHAIN, each handler's fast state, and
the start-up warning when a built chain cannot be fused."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from clearwall.config import CacheConfig, RateLimitConfig
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers import (
    CHAIN,
    FUSED_OPTIONAL,
    FUSED_PREFIX,
    MISS_DECLINED,
    MISS_REST,
    build_paths,
)
from clearwall.dnsserver.handlers.base import Factory, FastStep, Handler, Result, Services
from clearwall.dnsserver.handlers.ratelimit import LAST, SLIPS, TOKENS
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder
from dnsserver.conftest import dns_config


class Probe:
    """A handler of no standard kind, transparent on both paths."""

    def __init__(self, next_handler: Handler) -> None:
        self.next = next_handler

    def __call__(self, ctx: Context) -> Result:
        return self.next(ctx)

    def fast(self, next_step: FastStep | None) -> FastStep | None:
        return next_step


def probe(_services: Services, next_handler: Handler | None) -> Handler | None:
    assert next_handler is not None
    return Probe(next_handler)


def chain_with_probe_before(name: str) -> tuple[tuple[str, Factory], ...]:
    """CHAIN with the probe standing just before the handler ``name``."""
    at = [n for n, _ in CHAIN].index(name)
    return (*CHAIN[:at], ("probe", probe), *CHAIN[at:])


class Unreachable:
    """A transport with no engine (so no miss path is built) that never answers."""

    async def udp(self, server, query, timeout, check):  # type: ignore[no-untyped-def]
        raise TimeoutError

    async def tcp(self, server, query, timeout):  # type: ignore[no-untyped-def]
        raise TimeoutError


def services(ratelimit: bool = True, cache: bool = True) -> Services:
    config = dns_config(53)
    config = dataclasses.replace(
        config,
        ratelimit=RateLimitConfig(enabled=ratelimit),
        cache=CacheConfig(max_entries=10_000 if cache else 0),
    )
    return Services(config, PolicyHolder(), DNSMetrics(), Unreachable())


def test_the_fused_handlers_are_declared_in_chain_order() -> None:
    names = [name for name, _ in CHAIN if name != "querylog"]
    assert names[: len(FUSED_PREFIX)] == list(FUSED_PREFIX)
    rest = [n for n in names[len(FUSED_PREFIX) :] if n not in MISS_DECLINED]
    assert rest == list(MISS_REST)
    assert set(FUSED_PREFIX) >= FUSED_OPTIONAL


@pytest.mark.parametrize("ratelimit", [True, False])
def test_each_fused_handler_shares_its_fast_state_with_the_c_path(ratelimit: bool) -> None:
    """The containers the fused path was given are those the handlers' general paths fill:
    a query through the chain shows up in them."""
    built = build_paths(services(ratelimit=ratelimit), miss=False)
    assert built.fast is not None and type(built.fast).__name__ == "FusedPath"
    handlers = dict(zip(built.names, _handlers(built.entry), strict=True))
    acl, jurisdiction = handlers["acl"], handlers["jurisdiction"]
    assert acl.allowed("192.0.2.1") is False  # type: ignore[attr-defined]
    assert acl.fast_state.admitted == {"192.0.2.1": False}  # type: ignore[attr-defined]
    assert jurisdiction.of("127.0.0.1") == ""  # type: ignore[attr-defined]
    assert jurisdiction.fast_state.codes == {"127.0.0.1": ""}  # type: ignore[attr-defined]
    assert ("ratelimit" in handlers) is ratelimit


def test_a_bucket_is_tokens_last_slips() -> None:
    """The layout ``_ratelimit.h`` reads: a list of floats at these positions."""
    from clearwall.dnsserver.handlers.ratelimit import RateLimiter

    clock = [100.0]
    limiter = RateLimiter(
        RateLimitConfig(queries_per_second=1.0, burst=2.0, slip=2, exempt_loopback=False),
        lambda: clock[0],
        lambda _ctx: _ANSWER,
    )
    ctx = Context(b"", "192.0.2.9", 5353, False, None)  # type: ignore[arg-type]
    for _ in range(3):
        limiter(ctx)
    (bucket,) = limiter.fast_state.buckets.values()
    assert type(bucket) is list
    assert (bucket[TOKENS], bucket[LAST], bucket[SLIPS]) == (0.0, 100.0, 1.0)


@pytest.mark.parametrize(
    ("chain", "settings", "fast_warning", "miss_warning"),
    [
        (CHAIN, {}, None, None),
        (CHAIN, {"ratelimit": False}, None, None),
        (
            chain_with_probe_before("jurisdiction"),
            {},
            "'probe' stands where the fused path needs 'jurisdiction'",
            "'probe' stands where the fused path needs 'jurisdiction'",
        ),
        (
            chain_with_probe_before("special_use"),
            {},
            None,
            "'probe' stands where the fused path needs 'special_use'",
        ),
        (
            CHAIN,
            {"cache": False},
            "'special_use' stands where the fused path needs 'cache'",
            "'special_use' stands where the fused path needs 'cache'",
        ),
    ],
    ids=["standard", "no rate limit", "probe in the prefix", "probe after it", "no cache"],
)
def test_a_chain_that_cannot_be_fused_says_why_at_start(
    chain: tuple[tuple[str, Factory], ...],
    settings: dict[str, bool],
    fast_warning: str | None,
    miss_warning: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="clearwall.dnsserver"):
        built = build_paths(services(**settings), chain)
    fused = built.fast is not None and type(built.fast).__name__ == "FusedPath"
    assert fused is (fast_warning is None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = []
    if fast_warning is not None:
        expected.append(f"fused fast path off: {fast_warning}")
    if miss_warning is not None:
        expected.append(f"fused miss path off: {miss_warning}")
    assert len(warnings) == len(expected)
    for start in expected:
        assert any(w.startswith(start) for w in warnings), (start, warnings)


_ANSWER = object()


def _handlers(entry: Handler) -> list[Handler]:
    """The built handlers, outermost first, following each one's ``next``."""
    found = []
    handler: Handler | None = entry
    while handler is not None:
        found.append(handler)
        handler = getattr(handler, "next", None)
    return found
