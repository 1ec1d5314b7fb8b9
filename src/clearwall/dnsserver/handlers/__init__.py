"""The DNS handler chain: its order, declared once, and how it is built.

``CHAIN`` lists the handlers outermost first. Each is built once with the next one
(innermost first); a factory returning ``None`` (disabled by config) is left out of
the built chain, and ``describe`` gives the built order for the start-up log.
``build`` also composes the built handlers' synchronous fast steps (see ``base``) into
the UDP fast path, so cache hits and cached blocks skip the per-query context and the
chain of calls while following the same declared order; disabled handlers contribute
nothing to either. ``build_paths`` adds the standard chain's fused miss path
(``dnsserver.forward``) for the listeners. What the C paths fuse is declared here too,
beside the chain (``FUSED_PREFIX``, ``MISS_REST``), and matched by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from clearwall.dnsserver.forward import Miss

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

# The part of CHAIN that the fused C fast path runs as one call (``dnsserver.fused``),
# outermost first: the built chain (the query log aside, which wraps the path from
# outside) must start with exactly these, those in FUSED_OPTIONAL possibly left out by
# config. Each offers a ``fast_state``, the objects its fast steps read, declared for the
# C code (responder and cache: their public ``counts``, ``metrics``, ``clock``, ``table``).
FUSED_PREFIX: tuple[str, ...] = ("responder", "acl", "ratelimit", "jurisdiction", "cache")
FUSED_OPTIONAL = frozenset({"ratelimit"})
# What the fused miss path (``dnsserver.forward``) runs after the prefix, in C or through
# its continuation; the DDR handler, when built, answers the one name the path declines.
MISS_REST: tuple[str, ...] = (
    "special_use",
    "query_policy",
    "minimal_any",
    "response_policy",
    "upstream",
)
MISS_DECLINED = frozenset({"ddr"})


def fusable(
    built: list[tuple[str, Handler]],
    declared: tuple[str, ...],
    whole: bool = False,
    optional: frozenset[str] = FUSED_OPTIONAL,
) -> dict[str, Handler] | str:
    """The handlers of ``built`` (name and handler, outermost first) by name when it
    starts with the ``declared`` names in order (and has nothing more, with ``whole``),
    those in ``optional`` possibly absent; else why not, naming the first handler that
    does not fit (for the start-up warning)."""
    found: dict[str, Handler] = {}
    at = 0
    for name in declared:
        if at < len(built) and built[at][0] == name:
            found[name] = built[at][1]
            at += 1
        elif name not in optional:
            here = repr(built[at][0]) if at < len(built) else "the end of the chain"
            return f"{here} stands where the fused path needs {name!r}"
    if whole and at < len(built):
        return f"{built[at][0]!r} follows {declared[-1]!r}, where the fused path ends"
    return found


@dataclass
class Built:
    """A built chain and the paths the UDP listener takes before it."""

    entry: Handler
    names: list[str]
    fast: FastPath | None  # cache hits and cached blocks (see compose_fast)
    miss: Miss | None  # first-time names of the standard chain (dnsserver.forward)


def build(
    services: Services, chain: tuple[tuple[str, Factory], ...] = CHAIN, fuse: bool = True
) -> tuple[Handler, list[str], FastPath | None]:
    """Build the chain innermost first; return its entry, the built names and the fast path
    (``fuse``: see ``compose_fast``)."""
    built = build_paths(services, chain, fuse, miss=False)
    return built.entry, built.names, built.fast


def build_paths(
    services: Services,
    chain: tuple[tuple[str, Factory], ...] = CHAIN,
    fuse: bool = True,
    miss: bool = True,
) -> Built:
    """Build the chain innermost first, its fast path (``fuse``: see ``compose_fast``)
    and, with ``fuse`` and ``miss``, its fused miss path (``forward.fuse_miss``: the
    standard chain over a transport with an engine only)."""
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
    pairs = list(zip(built, handlers, strict=True))
    fast = compose_fast(pairs, fuse)
    fused_miss = None
    if fuse and miss:
        from clearwall.dnsserver.forward import fuse_miss

        fused_miss = fuse_miss(pairs, services)
    return Built(next_handler, built, fast, fused_miss)


def build_chain(
    services: Services, chain: tuple[tuple[str, Factory], ...] = CHAIN
) -> tuple[Handler, list[str]]:
    """Build the chain innermost first; return its entry and the names of built handlers."""
    entry, names, _fast = build(services, chain)
    return entry, names


def compose_fast(built: list[tuple[str, Handler]], fuse: bool = True) -> FastPath | None:
    """The fast path of the ``built`` handlers (name and handler, outermost first), or
    None when there is none.

    Steps are composed innermost first: a handler without ``fast`` cuts the path there
    (queries reaching it need the general path); the outermost handler must offer
    ``fast_path`` to turn the answer of the steps below it into reply bytes. With
    ``fuse`` a chain starting with ``FUSED_PREFIX`` runs its composition as one C call
    (``dnsserver.fused``).
    """
    handlers = [handler for _name, handler in built]
    wrap = getattr(handlers[0], "wrap_fast", None) if handlers else None
    if wrap is not None:
        # The query log stands outside the responder: it records what the fast path of
        # the handlers below it answers (fused or not), so that path stays as it is.
        inner = compose_fast(built[1:], fuse)
        return None if inner is None else wrap(inner, handlers[1:])
    step: FastStep | None = None
    for handler in reversed(handlers[1:]):
        make = getattr(handler, "fast", None)
        step = make(step) if make is not None else None
    outer = getattr(handlers[0], "fast_path", None) if handlers else None
    path: FastPath | None = None if outer is None or step is None else outer(step)
    if fuse:
        from clearwall.dnsserver.fused import fuse as fused

        return fused(built, path)  # says why when it cannot fuse
    return path


def describe(built: list[str]) -> str:
    """The built chain for the start-up log, e.g. ``responder → acl → … → upstream``."""
    return " → ".join(built)
