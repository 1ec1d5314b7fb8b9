"""Upstream: forward a cache miss to the jurisdiction's (or the default) upstreams.

The default upstreams are ``[dns.upstream] servers``, else the system's resolvers
(``resolvconf.default_upstreams``).

Cache-poisoning defences (RFC 5452 section 9.1): a fresh random query ID and source port
per attempt, and a reply is accepted only from the server's address and port (the
transport's connected socket), with our ID and our question: the name in any case, QTYPE
and QCLASS exactly. EDNS0 with a 1232-octet buffer; a truncated UDP reply is retried over
TCP (RFC 7766), and a reply truncated over TCP too is unusable. Each server gets
``attempts`` tries of ``timeout`` seconds; SERVFAIL/REFUSED/NOTIMP/FORMERR, garbage and
truncation fail over to the next server; when all fail the answer is FAILED (the cache
may then serve stale data), with the upstreams' own EDEs when any answered (RFC 8914),
EDE 22 when none did. A reply whose CNAME chain loops is FAILED too.

A server written ``tls://…`` or ``https://…`` is asked through the encrypted transport
(``upstream_encrypted``: DoT or DoH, certificates verified, connections reused) instead
of UDP/TCP, with the same ID/question checks, attempts and failover: servers of
different kinds fail over to each other in the configured order.

An RD=0 query is never forwarded (the cache answered it if it could): REFUSED with EDE
20, as Unbound (RFC 1034 section 4.3.1). The AD bit of a query is passed on, so a stub
that asks with AD and without DO learns what a validating upstream authenticated (RFC
6840 section 5.7). What is relayed has its TTLs within ``[dns.cache] min_ttl..max_ttl``
and, with ``minimal_responses``, only the sections Unbound would send.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from clearwall.config import DNSConfig, EncryptedUpstream, UpstreamServer
from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import FAILED, NOT_RECURSED, Answer, AnswerKind
from clearwall.dnsserver.context import OUR_UDP_PAYLOAD, Context
from clearwall.dnsserver.handlers.base import (
    EncryptedTransport,
    Handler,
    Result,
    Services,
    UpstreamTransport,
)
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.resolvconf import default_upstreams
from clearwall.errors import DNSWireError

log = logging.getLogger(__name__)

_FAILOVER_RCODES = frozenset({wire.SERVFAIL, wire.REFUSED, wire.NOTIMP, wire.FORMERR})


Server = tuple[str, int] | EncryptedUpstream  # a plain server as (host, port)


def _servers(hosts: tuple[UpstreamServer, ...]) -> tuple[Server, ...]:
    return tuple(h if isinstance(h, EncryptedUpstream) else (h.host, h.port) for h in hosts)


def _label(server: Server) -> str:
    return str(server) if isinstance(server, EncryptedUpstream) else f"{server[0]}:{server[1]}"


class Upstream:
    """The terminal handler: asks upstream servers, returns a FORWARDED or FAILED answer."""

    def __init__(
        self,
        config: DNSConfig,
        transport: UpstreamTransport,
        metrics: DNSMetrics,
        clock: Callable[[], float],
        encrypted: EncryptedTransport | None = None,
    ) -> None:
        up = config.upstream
        self.default = _servers(default_upstreams(config).servers)
        self.per_jurisdiction = {k: _servers(v) for k, v in up.per_jurisdiction.items()}
        self.timeout = up.timeout
        self.attempts = max(1, up.attempts)
        self.payload = up.edns_buffer
        self.minimal = up.minimal_responses
        self.negative_ttl = config.cache.negative_ttl
        self.min_ttl = config.cache.min_ttl
        self.max_ttl = config.cache.max_ttl
        self.max_inflight = config.max_inflight
        self.transport = transport
        self.encrypted = encrypted  # needed only when a server is tls:// or https://
        self.metrics = metrics
        self.clock = clock

    def __call__(self, ctx: Context) -> Result:
        """Forward, unless the query asks for no recursion or too many already wait."""
        if not ctx.data[2] & wire.RD:
            return NOT_RECURSED
        if self.metrics.inflight >= self.max_inflight:
            return FAILED
        # Counted now, not when the coroutine first runs, so a burst cannot overshoot.
        self.metrics.inflight += 1
        return self.resolve(ctx)

    async def resolve(self, ctx: Context) -> Answer:
        """Try each server in turn until one gives a usable reply (releases its in-flight slot)."""
        servers = self.per_jurisdiction.get(ctx.jurisdiction) or self.default
        q = ctx.q
        name = ctx.name_wire
        data = ctx.data
        ad = bool(data[3] & wire.AD)
        cd = bool(data[3] & wire.CD)
        metrics = self.metrics
        # The EDE options of the failure replies upstreams gave; None while none answered.
        failures: list[bytes] | None = None
        try:
            for server in servers:
                for _attempt in range(self.attempts):
                    qid = secrets.randbits(16)
                    query = wire.build_query(
                        qid, name, q.qtype, q.qclass, ad=ad, cd=cd, do=q.do, payload=self.payload
                    )
                    question = query[12 : 12 + len(name) + 4]
                    head = query[:2]

                    def matches(
                        reply: bytes, head: bytes = head, question: bytes = question
                    ) -> bool:
                        # RFC 5452 section 9.1: our ID, one question, our name (any case),
                        # our QTYPE and QCLASS exactly; the transport checks the source.
                        return (
                            reply[:2] == head
                            and len(reply) > 5
                            and bool(reply[2] & wire.QR)
                            and reply[4:6] == b"\x00\x01"
                            and wire.question_equal(reply, question)
                        )

                    start = self.clock()
                    try:
                        if isinstance(server, EncryptedUpstream):
                            assert self.encrypted is not None
                            reply = await self.encrypted.query(server, query, self.timeout)
                            if not matches(reply):
                                raise DNSWireError("reply does not match the query")
                            scan = wire.scan_reply(reply)
                        else:
                            reply = await self.transport.udp(server, query, self.timeout, matches)
                            scan = wire.scan_reply(reply)
                            if scan.truncated:
                                reply = await self.transport.tcp(server, query, self.timeout)
                                if not matches(reply):
                                    raise DNSWireError("TCP reply does not match the query")
                                scan = wire.scan_reply(reply)
                    except (TimeoutError, OSError, DNSWireError) as exc:
                        log.debug("upstream %s attempt failed: %s", _label(server), exc)
                        continue
                    metrics.observe_upstream(self.clock() - start)
                    if scan.truncated:
                        # Truncated over TCP as well: nothing usable will come from this
                        # server; an empty TC answer must never reach the client as data.
                        log.debug("upstream %s truncated its stream reply", _label(server))
                        break
                    if scan.rcode in _FAILOVER_RCODES:
                        failures = failures or []
                        if scan.opt_start >= 0:
                            failures += wire.ede_options(reply, scan.opt_start, scan.opt_end)
                        break  # this server cannot help; the next one might
                    if scan.cnames and wire.cname_loop(reply):
                        log.debug("upstream %s answered a CNAME loop", _label(server))
                        metrics.upstream_failures += 1
                        return _failed(())
                    return self.finish(ctx, reply, scan)
            metrics.upstream_failures += 1
            return FAILED if failures is None else _failed(failures)
        finally:
            metrics.inflight -= 1

    def finish(self, ctx: Context, reply: bytes, scan: wire.ReplyScan) -> Answer:
        """Turn an upstream reply into this client's variant: flags, OPT, sections, TTLs,
        cache lifetime."""
        data = ctx.data
        q = ctx.q
        # We are not authoritative (clear AA); echo the client's RD and CD; AD only for
        # clients that asked for DNSSEC or for AD (RFC 6840 sections 5.7 and 5.8).
        b2 = wire.QR | (data[2] & wire.RD)
        b3 = (
            wire.RA
            | (reply[3] & 0x0F)
            | (data[3] & wire.CD)
            | (reply[3] & wire.AD if (q.do or data[3] & wire.AD) else 0)
        )
        # The question as we asked it (lowercase), whatever case the server echoed: the
        # cache relies on it matching its key.
        qend = 12 + len(ctx.name_wire) + 4
        body = (
            reply[:2]
            + bytes((b2, b3))
            + reply[4:12]
            + ctx.name_wire
            + data[q.name_end : q.qend]
            + reply[qend:]
        )
        if self.minimal:
            minimal = wire.minimal_sections(body, q.qtype)
            if minimal is not body:
                body = minimal
                scan = wire.scan_reply(body)
        if scan.opt_start >= 0:
            if q.edns:
                at = scan.opt_start + 3  # OPT CLASS = the sender's UDP payload size
                body = body[:at] + OUR_UDP_PAYLOAD.to_bytes(2, "big") + body[at + 2 :]
            elif scan.opt_end == len(body):
                arcount = int.from_bytes(body[10:12], "big") - 1
                body = body[:10] + arcount.to_bytes(2, "big") + body[12 : scan.opt_start]
            else:
                body = self._without_opt(body)
                scan = wire.scan_reply(body)
        # Every relayed TTL within the cache's bounds, fresh now and counted down from
        # there when cached (the offsets do not move).
        body = wire.clamp_ttls(body, scan.ttl_offsets, self.min_ttl, self.max_ttl)
        return Answer(
            AnswerKind.FORWARDED, body, reason="forwarded", lifetime=self.lifetime(scan), scan=scan
        )

    def lifetime(self, scan: wire.ReplyScan) -> int:
        """How long the reply may be cached; -1 for never."""
        if scan.rcode == wire.NOERROR and scan.ancount > 0:
            return scan.min_all_ttl if scan.min_all_ttl is not None else -1
        if scan.rcode in (wire.NXDOMAIN, wire.NOERROR):
            if scan.soa_ttl is None:
                return -1  # RFC 2308 section 5: no SOA, no negative caching
            return min(scan.soa_ttl, self.negative_ttl)
        return -1

    @staticmethod
    def _without_opt(body: bytes) -> bytes:
        # OPT not last (rare): let dnspython re-render rather than shift compression.
        import dns.message  # only here: the data plane does not otherwise hold dnspython

        msg = dns.message.from_wire(body)
        msg.use_edns(False)
        out: bytes = msg.to_wire()
        return out


def _failed(ede: list[bytes] | tuple[bytes, ...]) -> Answer:
    """SERVFAIL carrying the EDE options upstreams gave (each once), or none."""
    return Answer(
        AnswerKind.FAILED, reason="no usable upstream answer", ede=b"".join(dict.fromkeys(ede))
    )


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """The terminal handler; needs a transport."""
    if services.transport is None:
        raise ValueError("the upstream handler needs a transport")
    up = services.config.upstream
    every = (*up.servers, *(s for v in up.per_jurisdiction.values() for s in v))
    if services.encrypted is None and any(isinstance(s, EncryptedUpstream) for s in every):
        from clearwall.dnsserver.upstream_encrypted import EncryptedUpstreams

        services.encrypted = EncryptedUpstreams(up.ca_file)
    return Upstream(
        services.config, services.transport, services.metrics, services.clock, services.encrypted
    )
