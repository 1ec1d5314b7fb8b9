"""The standard chain's UDP fast path fused into one C call (``_fastpath.FusedPath``).

``handlers.compose_fast`` composes the fast path from one Python step per handler. When
the built chain starts with the standard handlers that have steps (responder, acl,
ratelimit when enabled, jurisdiction, cache), ``fuse`` builds a ``FusedPath`` over the
objects those steps read and a ``ReplyTable``, and switches the cache and the responder
to it: the responder keeps what it renders from answers the cache serves again in the
table (one C record per query, instead of the cache's index of answers and the
responder's dictionary of renderings), and the cache empties it whenever a swap or an
order's date makes its entries stale. Any other chain, or a build without the
extension, keeps the Python composition.

The encrypted transports (DoT, DoH, DoQ) get a second ``FusedPath`` over the same table
without the rate limiter (``Responder.stream_fast``): the limiter lets stream clients
through, as the general path does for them, and the table holds only renderings that
are the same on every transport (see ``Responder._keep``).
"""

from __future__ import annotations

from clearwall.dnsserver.handlers.acl import ACL
from clearwall.dnsserver.handlers.base import FastPath, Handler
from clearwall.dnsserver.handlers.cache import Cache
from clearwall.dnsserver.handlers.jurisdiction import ClientJurisdiction
from clearwall.dnsserver.handlers.ratelimit import RateLimiter
from clearwall.dnsserver.handlers.responder import Responder


def fuse(handlers: list[Handler], path: FastPath) -> FastPath:
    """The fused fast path over ``handlers`` when the chain is the standard one (the
    cache and the responder then keep replies in its table); ``path`` otherwise."""
    try:
        from clearwall.dnsserver._fastpath import FusedPath, ReplyTable
    except ImportError:  # pragma: no cover - the extension is built with the package
        return path
    kinds = [type(h) for h in handlers[:5]]
    limiter: RateLimiter | None = None
    if kinds[:5] == [Responder, ACL, RateLimiter, ClientJurisdiction, Cache]:
        responder, acl, limiter, jurisdiction, cache = handlers[:5]  # type: ignore[assignment]
    elif kinds[:4] == [Responder, ACL, ClientJurisdiction, Cache]:
        responder, acl, jurisdiction, cache = handlers[:4]
    else:
        return path
    assert isinstance(responder, Responder) and isinstance(acl, ACL)
    assert isinstance(jurisdiction, ClientJurisdiction) and isinstance(cache, Cache)
    table = ReplyTable(responder.replies_max)
    fused: FastPath = FusedPath(
        acl_memo=acl._memo,
        exempt=None if limiter is None else limiter._exempt,
        prefixes=None if limiter is None else limiter._prefix,
        buckets=None if limiter is None else limiter._buckets,
        limiter_clock=None if limiter is None else limiter.clock,
        rate=0.0 if limiter is None else float(limiter.rate),
        burst=0.0 if limiter is None else float(limiter.burst),
        jurisdiction=jurisdiction._memo,
        table=table,
        clock=cache.clock,
        metrics=cache.metrics,
        counts=responder.counts,
        blocks=responder.metrics.blocks,
    )
    cache.table = table
    responder.table = table
    responder.stream_fast = FusedPath(
        acl_memo=acl._memo,
        exempt=None,
        prefixes=None,
        buckets=None,
        limiter_clock=None,
        rate=0.0,
        burst=0.0,
        jurisdiction=jurisdiction._memo,
        table=table,
        clock=cache.clock,
        metrics=cache.metrics,
        counts=responder.counts,
        blocks=responder.metrics.blocks,
    )
    return fused
