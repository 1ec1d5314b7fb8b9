"""The standard chain's UDP fast path fused into one C call (``_fastpath.FusedPath``).

``handlers.compose_fast`` composes the fast path from one Python step per handler. When
the built chain starts with the handlers ``handlers.FUSED_PREFIX`` declares (responder,
acl, ratelimit when enabled, jurisdiction, cache), ``fuse`` builds a ``FusedPath`` over
the objects those steps read (each handler's ``fast_state``) and a ``ReplyTable``, and
switches the cache and the responder to it: the responder keeps what it renders from
answers the cache serves again in the table (one C record per query, instead of the
cache's index of answers and the responder's dictionary of renderings), and the cache
empties it whenever a swap or an order's date makes its entries stale. Any other chain,
or a build without the extension, keeps the Python composition, and the start-up log
says why in a warning.

The encrypted transports (DoT, DoH, DoQ) get a second ``FusedPath`` over the same table
without the rate limiter (``Responder.stream_fast``): the limiter lets stream clients
through, as the general path does for them, and the table holds only renderings that
are the same on every transport (see ``Responder._keep``).
"""

from __future__ import annotations

import logging

from clearwall.dnsserver.handlers import FUSED_PREFIX, fusable
from clearwall.dnsserver.handlers.acl import ACL
from clearwall.dnsserver.handlers.base import FastPath, Handler
from clearwall.dnsserver.handlers.cache import Cache
from clearwall.dnsserver.handlers.jurisdiction import ClientJurisdiction
from clearwall.dnsserver.handlers.ratelimit import NO_LIMITER, LimiterFields, RateLimiter
from clearwall.dnsserver.handlers.responder import Responder

log = logging.getLogger(__name__)


def fuse(built: list[tuple[str, Handler]], path: FastPath | None) -> FastPath | None:
    """The fused fast path over the ``built`` handlers (name and handler, outermost
    first) when they start with ``FUSED_PREFIX`` (the cache and the responder then keep
    replies in its table); ``path``, their Python composition (None when there is none),
    otherwise, with a warning naming the handler in the way."""
    found = fusable(built, FUSED_PREFIX)
    if isinstance(found, str):
        log.warning("fused fast path off: %s; hits and blocks take the Python steps", found)
        return path
    try:
        from clearwall.dnsserver._fastpath import FusedPath, ReplyTable
    except ImportError as exc:  # pragma: no cover - the extension is built with the package
        log.warning("fused fast path off: the C extension is missing (%s)", exc)
        return path
    responder, acl = found["responder"], found["acl"]
    jurisdiction, cache = found["jurisdiction"], found["cache"]
    limiter = found.get("ratelimit")
    assert isinstance(responder, Responder) and isinstance(acl, ACL)
    assert isinstance(jurisdiction, ClientJurisdiction) and isinstance(cache, Cache)
    assert limiter is None or isinstance(limiter, RateLimiter)
    table = ReplyTable(responder.replies_max)

    def over(limits: LimiterFields) -> FastPath:
        return FusedPath(
            **acl.fast_state.c_fields(),
            **limits,
            **jurisdiction.fast_state.c_fields(),
            table=table,
            clock=cache.clock,
            metrics=cache.metrics,
            counts=responder.counts,
            blocks=responder.metrics.blocks,
        )

    fused = over(NO_LIMITER if limiter is None else limiter.fast_state.c_fields())
    cache.table = table
    responder.table = table
    responder.stream_fast = over(NO_LIMITER)  # stream clients are not rate limited
    return fused
