"""The handler contract: a handler gets the query context and returns an answer, or an
awaitable of one when it must wait (only the upstream does).

Handlers are built once, innermost first, each given the next handler; a factory that
returns ``None`` is disabled and simply left out of the built chain (no pass-throughs).
A handler returns its own answer (block, refusal, cache hit) or what ``next`` gives; one
that post-processes must accept both a ready ``Answer`` and an awaitable (``then``).

The fast path (cache hits and cached blocks over UDP) is derived from the same built
chain: a handler may offer ``fast(next_step)`` returning a synchronous ``FastStep``
that either gives the very answer its ``__call__`` would give (with the same side
effects: counters, rate-limit tokens) or returns None having left no trace, so the
general path can run instead. A handler without ``fast`` ends the fast path at its
position; the responder turns the composed steps into a ``FastPath`` (query to reply).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

from clearwall.config import DNSConfig, EncryptedUpstream
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder

if TYPE_CHECKING:
    from clearwall.querylog.recorder import Recorder

Result: TypeAlias = Answer | Awaitable[Answer]
Handler: TypeAlias = Callable[[Context], Result]
FastStep: TypeAlias = Callable[[bytes, bytes, str, str], Answer | None]
"""(query, query after its ID, client host, jurisdiction) -> answer, or None: no trace left."""
FastPath: TypeAlias = Callable[[bytes, str], bytes | None]
"""(UDP query, client host) -> the reply to send, or None: take the general path."""


class UpstreamTransport(Protocol):
    """Sends one query to one upstream and returns the raw reply (the socket side).

    Implementations pick a fresh random source port per query and accept only replies
    from the server's address; ID/question checks are the caller's.
    """

    async def udp(
        self, server: tuple[str, int], query: bytes, timeout: float, check: Callable[[bytes], bool]
    ) -> bytes:
        """Send over UDP; return the first reply passing ``check`` or raise TimeoutError."""
        ...

    async def tcp(self, server: tuple[str, int], query: bytes, timeout: float) -> bytes:
        """Send over TCP (RFC 7766 framing); return the reply or raise OSError/TimeoutError."""
        ...


class EncryptedTransport(Protocol):
    """Sends one query to one encrypted upstream (DoT or DoH) and returns its reply.

    Implementations verify the server's certificate and reuse connections; ID/question
    checks are the caller's.
    """

    async def query(self, server: EncryptedUpstream, query: bytes, timeout: float) -> bytes:
        """Send ``query``; return the reply or raise OSError/TimeoutError/DNSWireError."""
        ...


@dataclass
class Services:
    """Everything a handler factory may use; each takes only what it needs."""

    config: DNSConfig
    policy: PolicyHolder
    metrics: DNSMetrics = field(default_factory=DNSMetrics)
    transport: UpstreamTransport | None = None
    # Durations (TTLs, token buckets, latency) are measured on ``clock``; the policy's
    # dates (an order taking effect or expiring) are instants of ``wall``. Tests pass
    # their own to move time without waiting.
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    querylog: Recorder | None = None  # set only when [logging] query_log is on
    encrypted: EncryptedTransport | None = None  # for tls:// and https:// upstreams
    # The bound encrypted listeners per kind ("dot", "doh", "doq": [(host, port)]), shared
    # with the server, which fills it when it binds (DDR announces them).
    listeners: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


Factory: TypeAlias = Callable[[Services, Handler | None], Handler | None]


def then(result: Result, after: Callable[[Answer], Answer]) -> Result:
    """Apply ``after`` to a ready answer now, or to an awaited one later."""
    if result.__class__ is Answer:
        return after(result)
    return _then_async(result, after)  # type: ignore[arg-type]


async def _then_async(result: Awaitable[Answer], after: Callable[[Answer], Answer]) -> Answer:
    return after(await result)
