"""Responder: turns every answer into the bytes sent to this client.

It is the outermost handler, so it renders answers from every position the same way:
the client's ID and question (original case) are put into forwarded/cached bodies;
blocks become NXDOMAIN/NODATA/REFUSED/sinkhole per the order's action, with an EDE
(RFC 8914) chosen by basis and Structured DNS Error JSON as EXTRA-TEXT for EDNS
clients; refusals carry EDE 18 and failures EDE 22 unless the answer names its own EDEs
(an upstream's, or none). Block parts are memoized per
(verdict, qtype, query bits) so a block costs two concatenations. A reply longer than
the client's UDP size is cut to header and question with TC set (RFC 7766 section 5).

On the fast path (``fast_path``) the rendering of an answer for one exact query (all
but its ID) is kept, so a repeated cache hit or block costs the ID plus those bytes.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from clearwall.config import BlockConfig
from clearwall.dnsserver import sde, wire
from clearwall.dnsserver.answer import RCODE_FOR_ACTION, Answer, AnswerKind
from clearwall.dnsserver.context import OUR_UDP_PAYLOAD, Context
from clearwall.dnsserver.handlers.base import FastPath, FastStep, Handler, Result, Services
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView
from clearwall.model import Action, EDECode, OrderRef, Verdict

if TYPE_CHECKING:
    from clearwall.dnsserver._fastpath import ReplyTable

EDE_NO_REACHABLE_AUTHORITY = 22  # RFC 8914 section 4.23
_NO_REACHABLE = wire.ede_option(EDE_NO_REACHABLE_AUTHORITY)
_PROHIBITED = wire.ede_option(EDECode.PROHIBITED)
_HINFO_RFC8482 = b"\x07RFC8482\x00"
_MEMO_MAX = 50_000
_KEPT = frozenset({AnswerKind.CACHED, AnswerKind.BLOCKED})  # what the cache can serve again

# A memoized block: flags+counts (bytes 2-11) and the records after the question, for
# each SDE size variant (full, compact, none), largest first.
BlockParts = tuple[tuple[bytes, bytes], ...]


class Responder:
    """Renders answers into ``ctx.reply`` and counts them."""

    def __init__(
        self,
        block: BlockConfig,
        policy: PolicyHolder,
        metrics: DNSMetrics,
        next_handler: Handler,
        replies_max: int = _MEMO_MAX,
    ) -> None:
        self.replies_max = replies_max  # fast-path renderings kept (about the cache's size)
        self.block = block
        self.policy = policy
        # The fused fast path's table (dnsserver.fused), which then stands in for
        # _replies: what the fast path answers is kept there.
        self.table: ReplyTable | None = None
        # The encrypted transports' fast path over that table, without the rate limiter
        # (set by dnsserver.fused; None: they always take the general path).
        self.stream_fast: FastPath | None = None
        self.metrics = metrics
        self.counts = metrics.queries
        self.next = next_handler
        self.sinkhole4 = ipaddress.IPv4Address(block.sinkhole_ipv4).packed
        self.sinkhole6 = ipaddress.IPv6Address(block.sinkhole_ipv6).packed
        self._memo: dict[tuple[object, ...], tuple[OrderRef | None, BlockParts]] = {}
        self._version = policy.current.tree_size
        # Fast path: query after its ID -> (answer, reply after its ID, count key, order id).
        self._replies: dict[bytes, tuple[Answer, bytes, tuple[int, int, str], int | None]] = {}
        # One count key object per (qtype, rcode, decision), shared by every kept reply.
        self._count_keys: dict[tuple[int, int, str], tuple[int, int, str]] = {}
        policy.on_swap(self._forget)

    def _forget(self, new: PolicyView) -> None:
        self._memo = {}
        self._replies.clear()
        self._version = new.tree_size

    def __call__(self, ctx: Context) -> Result:
        """Render what the rest of the chain answers."""
        result = self.next(ctx)
        if result.__class__ is Answer:
            self._emit(ctx, result)
            if result.kind in _KEPT:
                self._keep(ctx, result)
            return result
        return self._later(ctx, result)

    def fast_path(self, next_step: FastStep) -> FastPath:
        """The UDP fast path: the steps below give the answer, a memo gives its bytes."""
        replies = self._replies
        counts = self.counts
        blocks = self.metrics.blocks

        def path(data: bytes, host: str) -> bytes | None:
            key = data[2:]
            answer = next_step(data, key, host, "")
            if answer is None:
                return None
            seen = replies.get(key)
            if seen is not None and seen[0] is answer:
                count = seen[2]
                counts[count] = counts.get(count, 0) + 1
                oid = seen[3]
                if oid is not None:  # the order was registered when first rendered
                    blocks[oid] = blocks.get(oid, 0) + 1
                return data[:2] + seen[1]
            return self._first_fast(data, key, host, answer)

        return path

    def _first_fast(self, data: bytes, key: bytes, host: str, answer: Answer) -> bytes | None:
        """Render ``answer`` the general way (counted once) and keep its bytes for ``key``."""
        # The steps only answer queries the general path parsed before (same bytes).
        ctx = Context(data, host, 0, False, wire.parse_query(data))
        self._emit(ctx, answer)
        if answer.kind in _KEPT:
            self._keep(ctx, answer)
        return ctx.reply

    def _keep(self, ctx: Context, answer: Answer) -> None:
        """Keep the rendering of ``answer`` for the fast paths (all but the ID) when it is
        the same on every transport: not cut to fit (``ctx.reduced``) and within what the
        query could take over UDP. The UDP fast path and the encrypted transports'
        (``stream_fast``) then serve the very bytes either would render."""
        out = ctx.reply
        if out is None or ctx.reduced or len(out) > ctx.udp_limit:
            return
        verdict = answer.verdict
        order = None
        if answer.kind is AnswerKind.BLOCKED and verdict is not None and verdict.citations:
            order = verdict.citations[0].order.id
        count = (ctx.q.qtype, out[3] & 0x0F, answer.decision)
        count = self._count_keys.setdefault(count, count)
        tail = answer.tail
        if tail is None or len(tail) + 2 != len(out):  # a cache hit's reply is ID + its tail
            tail = out[2:]
        table = self.table
        if table is not None:
            # Only answers the cache serves again carry the current token and a freshness
            # bound; the table keeps the reply until then (or until the next swap).
            if answer.token is self.policy.token:
                table.put(ctx.jurisdiction, ctx.after_id, tail, answer.until, count, order)
            return
        replies = self._replies
        if len(replies) >= self.replies_max:
            replies.clear()
        replies[ctx.after_id] = (answer, tail, count, order)

    def _emit(self, ctx: Context, result: Answer) -> None:
        """Set ``ctx.reply`` for a ready answer and count it (hot: cache hits inlined)."""
        tail = result.tail
        if tail is not None:
            # Cache hit with the very question asked: the query's ID, then our bytes.
            out = ctx.data[:2] + tail
            q = ctx.q
            if len(out) > 512 and len(out) > ctx.limit:
                out = wire.truncated_reply(out, q.qend, self._opt(q) if q.edns else b"")
                ctx.reduced = True
            ctx.reply = out
            key = (q.qtype, out[3] & 0x0F, result.decision)
            counts = self.counts
            counts[key] = counts.get(key, 0) + 1
            return
        body = result.body
        if body is not None:
            # The hot path (cache hits), inlined: client ID and question, our body.
            data = ctx.data
            q = ctx.q
            qend = q.qend
            out = data[:2] + body[2:12] + data[12:qend] + body[qend:]
            if len(out) > 512 and len(out) > ctx.limit:
                out = wire.truncated_reply(out, qend, self._opt(q) if q.edns else b"")
                ctx.reduced = True
            ctx.reply = out
            key = (q.qtype, out[3] & 0x0F, result.decision)
            counts = self.counts
            counts[key] = counts.get(key, 0) + 1
            return
        self.render(ctx, result)

    async def _later(self, ctx: Context, result: Result) -> Answer:
        answer: Answer = await result  # type: ignore[misc]
        self.render(ctx, answer)
        return answer

    def render(self, ctx: Context, answer: Answer) -> None:
        """Set ``ctx.reply`` to the wire reply for ``answer`` (None: send nothing)."""
        data = ctx.data
        q = ctx.q
        qend = q.name_end + 4
        body = answer.body
        kind = answer.kind
        if body is not None:
            out = data[:2] + body[2:12] + data[12:qend] + body[qend:]
            rcode = body[3] & 0x0F
            if len(out) > ctx.limit:
                out = wire.truncated_reply(out, qend, self._opt(q) if q.edns else b"")
                ctx.reduced = True
        elif kind is AnswerKind.BLOCKED and answer.verdict is not None:
            # Repeats of the same query take the fast path; here the memoized block parts
            # (per order and query shape, see _block) cost two concatenations.
            out, rcode = self._block(ctx, answer.verdict)
        elif kind is AnswerKind.DROPPED:
            ctx.reply = None
            self.metrics.count_query(q.qtype, 0, answer.decision)
            return
        elif kind is AnswerKind.TRUNCATED:
            rcode = wire.NOERROR
            out = wire.truncated_reply(
                data[:2] + wire.response_flags(data[2], 0) + data[4:],
                qend,
                self._opt(q) if q.edns else b"",
            )
        elif kind is AnswerKind.REFUSED:
            rcode = wire.REFUSED
            ede = answer.ede
            out = wire.error_reply(data, rcode, q, _PROHIBITED if ede is None else ede)
        elif kind is AnswerKind.MINIMAL:
            rcode = wire.NOERROR
            out = (
                data[:2]
                + wire.response_flags(data[2], rcode, cd=bool(data[3] & wire.CD))
                + wire.counts(1, 1, 0, 1 if q.edns else 0)
                + data[12:qend]
                + wire.answer_rr(wire.TYPE_HINFO, 3600, _HINFO_RFC8482)
                + (self._opt(q) if q.edns else b"")
            )
        else:
            # EDE 22 when no upstream answered; the upstreams' own EDEs when they did
            # (RFC 8914: the cause an operator should see, e.g. 6 DNSSEC Bogus).
            rcode = wire.SERVFAIL
            ede = answer.ede
            out = wire.error_reply(data, rcode, q, _NO_REACHABLE if ede is None else ede)
        ctx.reply = out
        self.metrics.count_query(q.qtype, rcode, answer.decision)

    @staticmethod
    def _opt(q: wire.Question) -> bytes:
        return wire.opt_record(OUR_UDP_PAYLOAD, do=q.do)

    def _block(self, ctx: Context, verdict: Verdict) -> tuple[bytes, int]:
        data = ctx.data
        q = ctx.q
        # The parts depend on the deciding order, how many more orders apply, the
        # action, the question type/class and the query bits; not on the name or the
        # rule, so one memo entry serves every name an order blocks.
        citations = verdict.citations
        first = citations[0].order if citations else None
        key = (id(first), len(citations), verdict.action, q.qtype, q.qclass, q.bits)
        memo = self._memo.get(key)
        if memo is None or memo[0] is not first:
            parts = self._block_parts(verdict, q, data[2], data[3])
            if len(self._memo) >= _MEMO_MAX:
                self._memo = {}
            self._memo[key] = (first, parts)
        else:
            parts = memo[1]
        if first is not None:
            self.metrics.count_block(first)
        qend = q.name_end + 4
        question = data[12:qend]
        limit = ctx.limit - qend
        for index, (head, tail) in enumerate(parts):
            if len(tail) <= limit:
                out = data[:2] + head + question + tail
                ctx.reduced = index > 0  # a shorter Structured DNS Error than the full one
                return out, out[3] & 0x0F
        ctx.reduced = True
        head, tail = parts[-1]
        out = wire.truncated_reply(
            data[:2] + head + question + tail, qend, self._opt(q) if q.edns else b""
        )
        return out, out[3] & 0x0F

    def _block_parts(self, verdict: Verdict, q: wire.Question, b2: int, b3: int) -> BlockParts:
        """Header bytes 2-11 and the records after the question, per SDE size variant."""
        action = verdict.action or Action.NXDOMAIN
        rcode = RCODE_FOR_ACTION[action]
        ttl = self.block.ttl
        answers = b""
        if action is Action.SINKHOLE and q.qclass == wire.CLASS_IN:
            if q.qtype == wire.TYPE_A:
                answers = wire.answer_rr(wire.TYPE_A, ttl, self.sinkhole4)
            elif q.qtype == wire.TYPE_AAAA:
                answers = wire.answer_rr(wire.TYPE_AAAA, ttl, self.sinkhole6)
        authority = b""
        if action in (Action.NXDOMAIN, Action.NODATA) or (
            action is Action.SINKHOLE and not answers
        ):
            authority = wire.synthetic_soa(ttl, self._version)
        flags = wire.response_flags(b2, rcode, cd=bool(b3 & wire.CD))
        an = 1 if answers else 0
        ns = 1 if authority else 0
        if not q.edns:
            return ((flags + wire.counts(1, an, ns, 0), answers + authority),)
        head = flags + wire.counts(1, an, ns, 1)
        code = verdict.ede or EDECode.BLOCKED
        full, compact = sde.variants(verdict, self.block)
        out = []
        for text in dict.fromkeys((full, compact, b"")):
            opt = wire.opt_record(OUR_UDP_PAYLOAD, do=q.do, options=wire.ede_option(code, text))
            out.append((head, answers + authority + opt))
        return tuple(out)


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on: the outermost handler."""
    assert next_handler is not None
    config = services.config
    kept = max(_MEMO_MAX, config.cache.max_entries)
    return Responder(config.block, services.policy, services.metrics, next_handler, kept)
