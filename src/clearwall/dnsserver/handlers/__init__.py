"""The DNS handler chain: its order, declared once, and how it is built.

``CHAIN`` lists the handlers outermost first. Each is built once with the next one
(innermost first); a factory returning ``None`` (disabled by config) is left out of
the built chain, and ``describe`` gives the built order for the start-up log.
``build`` also composes the built handlers' synchronous fast steps (see ``base``) into
the UDP fast path, so cache hits and cached blocks skip the per-query context and the
chain of calls while following the same declared order; disabled handlers contribute
nothing to either.
"""

from __future__ import annotations

from clearwall.dnsserver.handlers import (
    acl,
    cache,
    ddr,
    jurisdiction,
    minimal_any,
    query_policy,
    querylog,
    ratelimit,
    responder,
    response_policy,
    special_use,
    upstream,
)
from clearwall.dnsserver.handlers.base import Factory, FastPath, FastStep, Handler, Services

CHAIN: tuple[tuple[str, Factory], ...] = (
    # Outside everything, and only when [logging] query_log is on: records each answer
    # with the reply the responder rendered (its rcode), after the reply is ready.
    ("querylog", querylog.build),
    # Outermost: renders every answer below it (refusals, blocks, cache hits, upstream
    # data) into bytes the same way, and counts it.
    ("responder", responder.build),
    # Before anything costs work: outsiders get REFUSED + EDE 18 (no open resolver).
    ("acl", acl.build),
    # Admitted clients are still capped per prefix before cache or upstream work.
    ("ratelimit", ratelimit.build),
    # Everything below depends on whose orders apply (and the cache is keyed by it).
    ("jurisdiction", jurisdiction.build),
    # Holds policy-applied answers per jurisdiction and policy version, so a hit skips
    # the matcher and the upstream; misses go on and the result is stored.
    ("cache", cache.build),
    # DDR (RFC 9462): _dns.resolver.arpa is answered with our encrypted endpoints before
    # special_use would treat resolver.arpa as any name; after the cache so the fast
    # path's standard prefix is unchanged. Built only with an encrypted listener.
    ("ddr", ddr.build),
    # Special-use names (localhost, RFC 6303 reverse zones, .invalid) get their local
    # answer, and non-IN classes and zone transfers their refusal, before any policy or
    # upstream work; after the cache so the fast path's standard prefix is unchanged.
    ("special_use", special_use.build),
    # Name-based blocks answer without asking upstream.
    ("query_policy", query_policy.build),
    # ANY is answered minimally (RFC 8482) rather than forwarded for amplification.
    ("minimal_any", minimal_any.build),
    # Checks CNAME targets and addresses of what the upstream returns, before caching.
    ("response_policy", response_policy.build),
    # Terminal: forwards to the upstream resolvers.
    ("upstream", upstream.build),
)


def build(
    services: Services, chain: tuple[tuple[str, Factory], ...] = CHAIN, fuse: bool = True
) -> tuple[Handler, list[str], FastPath | None]:
    """Build the chain innermost first; return its entry, the built names and the fast path
    (``fuse``: see ``compose_fast``)."""
    next_handler: Handler | None = None
    built: list[str] = []
    handlers: list[Handler] = []
    for name, factory in reversed(chain):
        handler = factory(services, next_handler)
        if handler is not None:
            next_handler = handler
            built.append(name)
            handlers.append(handler)
    if next_handler is None:
        raise ValueError("the DNS chain is empty")
    built.reverse()
    handlers.reverse()
    return next_handler, built, compose_fast(handlers, fuse)


def build_chain(
    services: Services, chain: tuple[tuple[str, Factory], ...] = CHAIN
) -> tuple[Handler, list[str]]:
    """Build the chain innermost first; return its entry and the names of built handlers."""
    entry, built, _fast = build(services, chain)
    return entry, built


def compose_fast(handlers: list[Handler], fuse: bool = True) -> FastPath | None:
    """The fast path of built ``handlers`` (outermost first), or None when there is none.

    Steps are composed innermost first: a handler without ``fast`` cuts the path there
    (queries reaching it need the general path); the outermost handler must offer
    ``fast_path`` to turn the answer of the steps below it into reply bytes. With
    ``fuse`` the standard chain's composition runs as one C call (``dnsserver.fused``).
    """
    wrap = getattr(handlers[0], "wrap_fast", None) if handlers else None
    if wrap is not None:
        # The query log stands outside the responder: it records what the fast path of
        # the handlers below it answers (fused or not), so that path stays as it is.
        inner = compose_fast(handlers[1:], fuse)
        return None if inner is None else wrap(inner, handlers[1:])
    step: FastStep | None = None
    for handler in reversed(handlers[1:]):
        make = getattr(handler, "fast", None)
        step = make(step) if make is not None else None
    outer = getattr(handlers[0], "fast_path", None) if handlers else None
    if outer is None or step is None:
        return None
    path: FastPath = outer(step)
    if fuse:
        from clearwall.dnsserver.fused import fuse as fused

        return fused(handlers, path)
    return path


def describe(built: list[str]) -> str:
    """The built chain for the start-up log, e.g. ``responder → acl → … → upstream``."""
    return " → ".join(built)
