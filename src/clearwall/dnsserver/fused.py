"""The standard chain's UDP fast path fused into one C call (``_fastpath.FusedPath``).

``handlers.compose_fast`` composes the fast path from one Python step per handler. When
the built chain starts with the standard handlers that have steps (responder, acl,
ratelimit when enabled, jurisdiction, cache), ``fuse`` hands the same objects those
steps read to ``FusedPath``, which does the same lookups in C and gives back to the
Python composition whatever needs more than a lookup (a rate-limited client's token).
Any other chain, or a build without the extension, keeps the Python composition.
"""

from __future__ import annotations

from clearwall.dnsserver.handlers.acl import ACL
from clearwall.dnsserver.handlers.base import FastPath, Handler
from clearwall.dnsserver.handlers.cache import Cache
from clearwall.dnsserver.handlers.jurisdiction import Jurisdiction
from clearwall.dnsserver.handlers.ratelimit import RateLimiter
from clearwall.dnsserver.handlers.responder import Responder


def fuse(handlers: list[Handler], path: FastPath) -> FastPath:
    """``path`` (the Python composition over ``handlers``) as one C call when the chain
    is the standard one; ``path`` itself otherwise."""
    try:
        from clearwall.dnsserver._fastpath import FusedPath
    except ImportError:  # pragma: no cover - the extension is built with the package
        return path
    kinds = [type(h) for h in handlers[:5]]
    limiter: RateLimiter | None = None
    if kinds[:5] == [Responder, ACL, RateLimiter, Jurisdiction, Cache]:
        responder, acl, limiter, jurisdiction, cache = handlers[:5]  # type: ignore[assignment]
    elif kinds[:4] == [Responder, ACL, Jurisdiction, Cache]:
        responder, acl, jurisdiction, cache = handlers[:4]
    else:
        return path
    assert isinstance(responder, Responder) and isinstance(acl, ACL)
    assert isinstance(jurisdiction, Jurisdiction) and isinstance(cache, Cache)
    fused: FastPath = FusedPath(
        acl_memo=acl._memo,
        exempt=None if limiter is None else limiter._exempt,
        jurisdiction=jurisdiction._memo,
        index=cache._index,
        clock=cache.clock,
        holder=cache.policy,
        metrics=cache.metrics,
        replies=responder._replies,
        counts=responder.counts,
        blocks=responder.metrics.blocks,
        first=responder._first_fast,
        fallback=path,
    )
    return fused
