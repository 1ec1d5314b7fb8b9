"""The standard chain's cache-miss path fused into C (``_forward``), and the Python
continuation that finishes what it hands over.

A first-time name used to take the general chain: a ``Context``, ten handler calls, a
coroutine and a task, a Python socket per upstream attempt, the reply shaped, stored
and rendered in Python (about 44 µs of server CPU per miss against Unbound's 20, see
``docs/dns/upstream.md``). When the built chain is the standard one and the upstream
transport is the plain ``SocketTransport``, ``fuse_miss`` builds a ``MissPath`` over
the same handlers' objects: the UDP listener offers it every datagram the fast path
declined, and it forwards the queries it can answer exactly as the chain would, in C,
through the transport's ``Engine`` (a fresh random port and ID per attempt). What it
cannot finish (truncation, CNAMEs, a blocked address, every upstream failing) it hands
to ``Continuation``, which resumes the upstream handler's loop at that point and runs
the rest of the chain's way back (response policy, cache, responder). Any other chain,
a transport of another kind, or a platform without the extension keeps every miss on
the general chain; so does every miss whose upstream list (the default one or its
jurisdiction's) names a ``tls://`` or ``https://`` server: the C path speaks plain UDP
only, and those queries must leave encrypted. With the query log on (its handler outside
the standard chain), both record what they answer through it, as the chain would. With
an encrypted listener the DDR handler stands after the cache: the path declines the one
name it answers, ``_dns.resolver.arpa``, and takes the rest as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clearwall.config import EncryptedUpstream
from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers import FUSED_PREFIX, MISS_DECLINED, MISS_REST, fusable
from clearwall.dnsserver.handlers.acl import ACL
from clearwall.dnsserver.handlers.base import Handler, Services
from clearwall.dnsserver.handlers.cache import Cache
from clearwall.dnsserver.handlers.ddr import NAME_TEXT as DDR_NAME
from clearwall.dnsserver.handlers.jurisdiction import ClientJurisdiction
from clearwall.dnsserver.handlers.querylog import QueryLog
from clearwall.dnsserver.handlers.ratelimit import NO_LIMITER, RateLimiter
from clearwall.dnsserver.handlers.responder import Responder
from clearwall.dnsserver.handlers.response_policy import ResponsePolicy
from clearwall.dnsserver.handlers.special_use import SpecialUse
from clearwall.dnsserver.handlers.upstream import Resume, Server, Upstream
from clearwall.model import ALLOWED

if TYPE_CHECKING:
    from clearwall.dnsserver._forward import Engine, MissPath

log = logging.getLogger(__name__)

# The chain the miss path takes over, outermost first (declared beside CHAIN).
_STANDARD = FUSED_PREFIX + MISS_REST


def available() -> bool:
    """True where the C extension was built with its engine (Linux, little-endian)."""
    try:
        from clearwall.dnsserver import _forward
    except ImportError:  # pragma: no cover - built with the package
        return False
    return bool(_forward.AVAILABLE)


def new_engine() -> Engine | None:
    """An engine for a plain UDP transport, or None where there is none."""
    if not available():
        return None
    from clearwall.dnsserver._forward import Engine

    return Engine()


class Continuation:
    """Finishes a query the fused path handed over, as the chain would have: the upstream
    handler's loop from the attempt reached, then the response policy, the cache and the
    responder, and the reply sent from the listener the query came in on."""

    def __init__(
        self,
        responder: Responder,
        cache: Cache,
        response_policy: ResponsePolicy,
        upstream: Upstream,
        engine: Engine,
        querylog: QueryLog | None = None,
    ) -> None:
        self.responder = responder
        self.cache = cache
        self.response_policy = response_policy
        self.upstream = upstream
        self.engine = engine
        self.querylog = querylog  # the chain's query log handler, when the log is on
        self.tasks: set[asyncio.Future[None]] = set()

    def __call__(
        self,
        query: bytes,
        host: str,
        port: int,
        sockaddr: bytes,
        fd: int,
        jurisdiction: str,
        key: bytes,
        generation: int,
        token: object,
        server: int,
        attempt: int,
        failures: list[bytes] | None,
        qid: int,
        reply: bytes | None,
        started: float,
        arrived: float = 0.0,
    ) -> None:
        """Take over one query (called by the C path; see ``Resume`` for the fields;
        ``arrived``: when the path took it, on ``perf_counter``, for the query log)."""
        # The C path parsed these very bytes the way parse_query does, so this cannot fail.
        ctx = Context(query, host, port, False, wire.parse_query(query))
        ctx.jurisdiction = jurisdiction
        resume = Resume(server, attempt, failures, qid, reply, started)
        finish = self._finish(ctx, key, generation, token, resume, fd, sockaddr, arrived)
        task = asyncio.ensure_future(finish)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _finish(
        self,
        ctx: Context,
        key: bytes,
        generation: int,
        token: object,
        resume: Resume,
        fd: int,
        sockaddr: bytes,
        arrived: float,
    ) -> None:
        answer: Answer | None = None
        try:
            # The chain's way back from the upstream handler, in its order: the response
            # policy's check, the cache's store (under the key, generation and policy
            # token of the query's arrival) and the responder's rendering.
            answer = await self.upstream.resolve(ctx, resume)
            answer = self.response_policy.check(answer, ctx.jurisdiction)
            answer = self.cache._store(key, generation, token, answer)
            self.responder.render(ctx, answer)
            out = ctx.reply
        except Exception:  # as the dispatcher: a handler bug costs one query, SERVFAIL
            log.exception("handler chain failed")
            out = wire.error_reply(ctx.data, wire.SERVFAIL, ctx.q)
            answer = None  # and, as there, no record of it
        if out is not None:
            self.engine.send(fd, sockaddr, out)
        if answer is not None and self.querylog is not None:
            self.querylog.record(ctx, answer, arrived)


@dataclass
class Miss:
    """A built chain's fused miss path: the C callable the UDP listener offers datagrams
    to, and the continuation holding the queries it handed over."""

    path: MissPath
    continuation: Continuation
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = self.path.engine


PlainRoute = tuple[tuple[str, int], ...] | None


def _plain(servers: tuple[Server, ...]) -> PlainRoute:
    """``servers`` when every one is a plain (host, port), else None."""
    plain = tuple(s for s in servers if not isinstance(s, EncryptedUpstream))
    return plain if len(plain) == len(servers) else None


def _plain_routes(upstream: Handler) -> tuple[PlainRoute, dict[str, PlainRoute]] | None:
    """The upstream handler's routes for the fused path: the default list and each
    jurisdiction's, None for a list with a tls:// or https:// server (the C path speaks
    plain UDP only, so it declines those queries and the Python upstream asks over the
    encrypted transport); None when no route is plain."""
    assert isinstance(upstream, Upstream)
    default = _plain(upstream.default)
    per = {code: _plain(servers) for code, servers in upstream.per_jurisdiction.items()}
    if default is None and all(route is None for route in per.values()):
        log.info("fused miss path not used: every upstream list has an encrypted server")
        return None
    encrypted = sorted(code for code, route in per.items() if route is None)
    if default is None:
        encrypted.insert(0, "the default list")
    if encrypted:
        log.info(
            "fused miss path: misses for %s go through the Python upstream (an encrypted "
            "server in the list)",
            ", ".join(encrypted),
        )
    return default, per


def fuse_miss(built: list[tuple[str, Handler]], services: Services) -> Miss | None:
    """The fused miss path of the ``built`` handlers (name and handler, outermost first),
    or None unless the chain is the standard one (``FUSED_PREFIX`` then ``MISS_REST``,
    with the query log outside it, and DDR after the cache, or not) and the transport
    offers an engine (``SocketTransport.engine``)."""
    querylog = built[0][1] if built and isinstance(built[0][1], QueryLog) else None
    if querylog is not None:
        built = built[1:]  # it records what the path answers (``record``)
    # With an encrypted listener DDR answers one name; the path declines it (``endings``:
    # its last label, arpa, is among special_use's too, but that is theirs to change).
    ddr = [h for name, h in built if name in MISS_DECLINED]
    found = fusable([b for b in built if b[0] not in MISS_DECLINED], _STANDARD, whole=True)
    if isinstance(found, str):
        log.warning("fused miss path off: %s; misses take the Python chain", found)
        return None
    make_engine = getattr(services.transport, "engine", None)
    if make_engine is None:
        return None
    routes = _plain_routes(found["upstream"])
    if routes is None:
        return None
    default, per_jurisdiction = routes
    engine = make_engine()
    if engine is None:
        return None
    from clearwall.dnsserver._forward import MissPath

    responder, acl, limiter = found["responder"], found["acl"], found.get("ratelimit")
    jurisdiction, cache = found["jurisdiction"], found["cache"]
    special_use, upstream = found["special_use"], found["upstream"]
    response_policy = found["response_policy"]
    assert isinstance(responder, Responder) and isinstance(acl, ACL)
    assert isinstance(jurisdiction, ClientJurisdiction) and isinstance(cache, Cache)
    assert isinstance(special_use, SpecialUse) and isinstance(upstream, Upstream)
    assert isinstance(response_policy, ResponsePolicy)
    assert limiter is None or isinstance(limiter, RateLimiter)
    continuation = Continuation(responder, cache, response_policy, upstream, engine, querylog)
    try:
        path = MissPath(
            engine=engine,
            **acl.fast_state.c_fields(),
            **(NO_LIMITER if limiter is None else limiter.fast_state.c_fields()),
            **jurisdiction.fast_state.c_fields(),
            endings=special_use.endings + ((DDR_NAME,) if ddr else ()),
            cache=cache,
            clock=cache.clock,
            records=cache.records,
            blocks=cache.blocks,
            cache_min_ttl=cache.config.min_ttl,
            cache_max_ttl=cache.config.max_ttl,
            policy=cache.policy,
            allowed=ALLOWED,
            metrics=upstream.metrics,
            counts=responder.counts,
            default=default,
            per_jurisdiction=per_jurisdiction,
            timeout=float(upstream.timeout),
            attempts=upstream.attempts,
            payload=upstream.payload,
            minimal=upstream.minimal,
            negative_ttl=upstream.negative_ttl,
            min_ttl=upstream.min_ttl,
            max_ttl=upstream.max_ttl,
            max_inflight=upstream.max_inflight,
            handoff=continuation,
            record=None if querylog is None else querylog.record_forwarded,
            # The policy's own default is the current time: a call less per miss.
            wall=None if response_policy.wall is time.time else response_policy.wall,
        )
    except (TypeError, ValueError) as exc:
        # e.g. an upstream given by name: the general chain forwards every miss then.
        log.warning("fused miss path not used: %s", exc)
        return None
    return Miss(path, continuation)
