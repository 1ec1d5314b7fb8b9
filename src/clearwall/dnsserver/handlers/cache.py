"""Cache: policy-applied answers per (question, query bits, jurisdiction), bounded LRU.

It stands before the query policy, so a hit skips the matcher and the upstream. Entries
are tagged with the policy version they were decided under; an entry of an older
version is a miss, so a policy swap takes effect at once without flushing. A swap the
control plane marks equivalent (same verdicts) keeps forwarded answers valid. Time
counts as a swap: when an order of the policy takes effect or expires
(``next_change``), entries decided before are no longer served, so an order dated
for later is enforced at its hour even for names cached as allowed.

Forwarded answers (and negative ones, RFC 2308) are kept as packed records in a C
store (``_lrustore``), one allocation per entry, because the cache holds up to
``max_entries`` of them and Python objects would cost several times the bytes of the
reply itself (``bench/cache_memory.py``). A record keeps the reply (less its question,
which ends the key) with its TTL offsets and values, and hits count the TTLs down
(RFC 1035 section 3.2.1); a hit's question is the key's, in lowercase. Blocks are
kept apart as the answer objects the query policy made: they carry the verdict the
responder renders, and there are as many as there are distinct blocked names asked.
Negative answers live min(SOA TTL, MINIMUM, negative_ttl) (RFC 2308 section 5). When
every upstream fails, an expired answer up to ``max_stale`` old is served with
``stale_ttl`` (RFC 8767 section 4); one made under an older policy is screened by the
current one first (its CNAME targets and addresses), as the response policy would.

The fast step serves a hit straight from the raw query: exact-case hits index their
answer by (jurisdiction, query after its ID), the bytes that decide every part of the
key, and the step answers from that index while the answer is fresh: a forwarded
answer for the second its TTLs were stamped in, a block for its life. Anything else
goes the general way, which restamps and re-indexes. A policy swap clears the index.
"""

from __future__ import annotations

import math
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from clearwall.config import CacheConfig
from clearwall.dnsserver import wire
from clearwall.dnsserver._lrustore import LRUStore
from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services, then
from clearwall.dnsserver.handlers.response_policy import screen
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder

if TYPE_CHECKING:
    from clearwall.dnsserver._fastpath import ReplyTable

EDE_STALE_ANSWER = 3

# A record: this header, the TTL offsets (u16 each), the TTL values (u32 each), then the
# reply without its question (the key ends with it). Header: expires (clock), stored
# (whole second), policy generation, OPT start and end (0: no OPT), how many TTLs.
_HEADER = struct.Struct("<dIIHHH")
_COUNT = struct.Struct("<H")
_TTL = struct.Struct("!I")


def _pack(key: bytes, expires: float, stored: int, generation: int, answer: Answer) -> bytes | None:
    """The record of forwarded ``answer`` under ``key``; None if its question is not the key's."""
    body = answer.body
    scan = answer.scan
    assert body is not None
    question = key[3 + key[0] :]
    qend = 12 + len(question)
    if not wire.question_equal(body, question):
        return None  # the upstream checks the question; this is only a guard
    offsets = scan.ttl_offsets if scan is not None else ()
    opt = scan is not None and scan.opt_start >= 0
    n = len(offsets)
    return b"".join(
        (
            _HEADER.pack(
                expires,
                stored,
                generation,
                scan.opt_start if opt else 0,  # type: ignore[union-attr]
                scan.opt_end if opt else 0,  # type: ignore[union-attr]
                n,
            ),
            struct.pack(f"<{n}H{n}I", *offsets, *wire.read_ttls(body, offsets)),
            body[:12],
            body[qend:],
        )
    )


def _unpack(key: bytes, record: bytes) -> tuple[tuple[int, ...], tuple[int, ...], bytearray]:
    """A record's TTL offsets, TTL values and reply (question put back from ``key``)."""
    n = _COUNT.unpack_from(record, _HEADER.size - 2)[0]
    at = _HEADER.size
    fields = struct.unpack_from(f"<{n}H{n}I", record, at)
    at += 6 * n
    reply = bytearray(record[at : at + 12])
    reply += key[3 + key[0] :]
    reply += record[at + 12 :]
    return fields[:n], fields[n:], reply


class Cache:
    """The answer cache handler."""

    def __init__(
        self,
        config: CacheConfig,
        policy: PolicyHolder,
        metrics: DNSMetrics,
        clock: Callable[[], float],
        next_handler: Handler,
        block_ttl: int,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.block_ttl = block_ttl  # of a stale answer the current policy now blocks
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        self.next = next_handler
        self.records = LRUStore(config.max_entries)  # key -> packed forwarded answer
        self.blocks: OrderedDict[bytes, Answer] = OrderedDict()  # key -> block answer
        self._generation = 0  # counts policy swaps; records carry the one they were made in
        # Key prefix per (jurisdiction, query bits).
        self._prefixes: dict[tuple[str, int], bytes] = {}
        # jurisdiction -> query after its ID -> answer, for exact-case hits (``fast``);
        # nested rather than keyed by a pair, so no key tuple is made per query or kept.
        self._index: dict[str, dict[bytes, Answer]] = {}
        # The fused fast path's table (dnsserver.fused), which then stands in for _index.
        self.table: ReplyTable | None = None
        # When (on this cache's clock) an order of the current policy takes effect or
        # expires: answers decided before then are not served after it.
        self._change_at = math.inf
        metrics.cache_size = self.__len__
        policy.on_swap(self._forget)
        self._schedule()

    def __len__(self) -> int:
        return len(self.records) + len(self.blocks)

    def _forget(self, _new: object) -> None:
        # Entries of the old version can no longer be served: the index goes at once,
        # records and blocks when met (their generation or token is the old one). After
        # an equivalent swap forwarded answers stay (they were screened by the same
        # verdicts), so a consolidation sends nothing to the upstreams again.
        if not self.policy.equivalent:
            self._generation = (self._generation + 1) & 0xFFFFFFFF  # as records hold it
        self._forget_fast()
        self._schedule()

    def _forget_fast(self) -> None:
        self._index.clear()
        if self.table is not None:
            self.table.clear()

    def _schedule(self) -> None:
        """Find the policy's next effective-from or expiry instant, on our clock."""
        wall = self.wall()
        later = self.policy.current.next_change(wall)
        self._change_at = math.inf if later == math.inf else self.clock() + (later - wall)

    def _cross(self) -> None:
        # An order took effect or expired: every verdict may differ from now on, as
        # after a swap (fast-path answers and blocks are never fresh past _change_at).
        self._generation = (self._generation + 1) & 0xFFFFFFFF
        self._forget_fast()
        self._schedule()

    def _key(self, question: bytes, bits: int, jurisdiction: str) -> bytes:
        """The store key: jurisdiction (length-prefixed), query bits, question."""
        prefix = self._prefixes.get((jurisdiction, bits))
        if prefix is None:
            name = jurisdiction.encode()
            prefix = bytes([len(name)]) + name + bits.to_bytes(2, "big")
            if len(self._prefixes) < 4096:  # jurisdictions are configured, so few
                self._prefixes[(jurisdiction, bits)] = prefix
        return prefix + question

    def __call__(self, ctx: Context) -> Result:
        """Serve a fresh entry of the current policy version, else ask ``next`` and store."""
        data = ctx.data
        q = ctx.q
        # Keys hold the question with a lowercase name (RFC 4343). Most clients ask in
        # lowercase, so the raw question is tried first and lowercasing is skipped.
        question = data[12 : q.qend]
        low = data[12 : q.name_end].lower() + data[q.name_end : q.qend]
        exact = low == question
        # RD is not part of the key: an RD=0 query is answered from what RD=1 queries
        # cached (RFC 1034 section 4.3.1), with its own RD bit in the reply.
        key = self._key(low, q.bits & ~wire.RD, ctx.jurisdiction)
        now = self.clock()
        if now >= self._change_at:
            self._cross()
        generation = self._generation
        token = self.policy.token
        answer = self._fresh(key, generation, token, now, data[2] & wire.RD)
        if answer is not None:
            self.metrics.cache_hits += 1
            if exact:
                self._remember(ctx, answer)
                return answer
            # Mixed-case query: the responder must put the client's question back.
            return Answer(answer.kind, answer.body, answer.verdict, answer.reason)
        self.metrics.cache_misses += 1
        result = self.next(ctx)
        if result.__class__ is Answer:  # blocks and other local answers: store now
            stored = self._store(key, generation, token, result)
            if exact and stored.until > now:  # the next identical query takes the fast path
                self._remember(ctx, stored)
            return stored
        return then(result, partial(self._store, key, generation, token))

    def _fresh(
        self, key: bytes, generation: int, token: object, now: float, rd: int
    ) -> Answer | None:
        """The fresh answer stored under ``key`` for this policy version, or None (``rd``:
        the query's RD bit, which the reply echoes)."""
        block = self.blocks.get(key)
        if block is not None:
            if now < block.until and block.token is token:
                return block
            return None
        record = self.records.get(key)
        if record is None:
            return None
        expires, stored, made_in, _opt_start, _opt_end, _n = _HEADER.unpack_from(record)
        if now >= expires or made_in != generation:
            return None
        # Count the TTLs down from the stored values (RFC 1035 section 3.2.1).
        self.records.touch(key)
        sec = int(now)
        age = sec - stored
        offsets, ttls, body = _unpack(key, record)
        for off, ttl in zip(offsets, ttls, strict=True):
            _TTL.pack_into(body, off, ttl - age if ttl > age else 0)
        body[2] = (body[2] & ~wire.RD) | rd
        reply = bytes(body)
        answer = Answer(AnswerKind.CACHED, reply, None, "cache hit")
        answer.tail = reply[2:]
        until = sec + 1 if sec + 1 < expires else expires  # restamped each second
        answer.until = until if until < self._change_at else self._change_at
        answer.token = token
        return answer

    def fast(self, _next_step: FastStep | None) -> FastStep:
        """Answer an indexed exact-case hit that is still fresh; None otherwise (no trace)."""
        index = self._index
        clock = self.clock
        policy = self.policy
        metrics = self.metrics

        def step(data: bytes, key: bytes, host: str, jurisdiction: str) -> Answer | None:
            by_query = index.get(jurisdiction)
            if by_query is None:
                return None
            answer = by_query.get(key)
            if answer is None:
                return None
            if clock() < answer.until and answer.token is policy.token:
                metrics.cache_hits += 1
                return answer
            return None

        return step

    def _remember(self, ctx: Context, answer: Answer) -> None:
        """Index ``answer`` under this exact query for the fast step (with a fused fast
        path the responder keeps its rendering in the table instead)."""
        if self.table is not None:
            return
        by_query = self._index.get(ctx.jurisdiction)
        if by_query is None:
            by_query = self._index[ctx.jurisdiction] = {}
        elif len(by_query) >= self.config.max_entries:
            by_query.clear()
        by_query[ctx.after_id] = answer

    def _store(self, key: bytes, generation: int, token: object, answer: Answer) -> Answer:
        cfg = self.config
        if answer.kind is AnswerKind.FAILED:
            return self._stale(key, answer)
        lifetime = answer.lifetime
        if lifetime < 0:
            return answer
        if lifetime < cfg.min_ttl:
            lifetime = cfg.min_ttl
        if lifetime > cfg.max_ttl:
            lifetime = cfg.max_ttl
        if lifetime <= 0:
            return answer
        now = self.clock()
        body = answer.body
        if body is None:  # a block: kept as the answer itself, fresh for its life
            until = now + lifetime
            answer.until = until if until < self._change_at else self._change_at
            answer.token = token
            self.records.pop(key)  # a key is in one store or the other, never both
            blocks = self.blocks
            blocks[key] = answer
            blocks.move_to_end(key)
            while len(blocks) > cfg.max_entries:
                blocks.popitem(last=False)
            return answer
        record = _pack(key, now + lifetime, int(now), generation, answer)
        if record is not None:
            self.blocks.pop(key, None)
            self.records.put(key, record)
        return answer

    def _stale(self, key: bytes, failed: Answer) -> Answer:
        """RFC 8767: an expired forwarded answer beats SERVFAIL while within max_stale."""
        cfg = self.config
        if not cfg.serve_stale:
            return failed
        record = self.records.get(key)
        if record is None:
            return failed  # only data from upstream is served stale, never an old block
        expires, _stored, made_in, opt_start, opt_end, _n = _HEADER.unpack_from(record)
        if self.clock() > expires + cfg.max_stale:
            return failed
        offsets, _ttls, reply = _unpack(key, record)
        body = wire.set_ttls(bytes(reply), offsets, cfg.stale_ttl)
        if made_in != self._generation:
            # Screened under an older policy: its CNAME targets and addresses are
            # checked again, so an outage never serves what the policy now blocks.
            jurisdiction = key[1 : 1 + key[0]].decode()
            forwarded = Answer(AnswerKind.FORWARDED, body, scan=wire.scan_reply(body))
            screened = screen(
                forwarded, self.policy.current, jurisdiction, self.block_ttl, self.wall()
            )
            if screened is not forwarded:
                return screened
        self.metrics.stale_served += 1
        if opt_start and opt_end == len(body):
            # EDNS client: say so with EDE 3 Stale Answer (RFC 8914 section 4.4).
            body = wire.append_option(body, opt_start, wire.ede_option(EDE_STALE_ANSWER))
        return Answer(AnswerKind.STALE, body, reason="stale: every upstream failed")

    def clear(self) -> None:
        """Drop every entry."""
        self.records.clear()
        self.blocks.clear()
        self._forget_fast()


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Present unless ``[dns.cache] max_entries = 0``."""
    assert next_handler is not None
    cfg = services.config.cache
    if cfg.max_entries <= 0:
        return None
    return Cache(
        cfg,
        services.policy,
        services.metrics,
        services.clock,
        next_handler,
        services.config.block.ttl,
        services.wall,
    )
