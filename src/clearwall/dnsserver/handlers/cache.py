"""Cache: policy-applied answers per (question, query bits, jurisdiction), bounded LRU.

It stands before the query policy, so a hit costs one dict lookup: entries hold the
final answer for that jurisdiction (blocks included) and are tagged with the policy
version they were decided under; an entry of an older version is a miss, so a policy
swap takes effect at once without flushing. Forwarded answers keep their TTL offsets
and are re-stamped at most once per second (TTL counts down, RFC 1035 section 3.2.1);
block answers carry no TTLs to count and are never re-stamped (their LRU position is
where they were stored, so a burst of new names may evict a busy block: it is matched
again, at the cost of one snapshot lookup).
Negative answers live min(SOA TTL, MINIMUM, negative_ttl) (RFC 2308 section 5). When
every upstream fails, an expired answer up to ``max_stale`` old is served with
``stale_ttl`` (RFC 8767 section 4).

The fast step serves a hit straight from the raw query: exact-case hits index their
entry by (query after its ID, jurisdiction), the bytes that decide every part of the
key, and the step answers from that index while the entry's once-a-second memo is
fresh (anything else goes the general way, which restamps and re-indexes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from clearwall.config import CacheConfig
from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services, then
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policy import PolicyHolder

CacheKey = tuple[bytes, int, str]
"""(question with lowercase name, query bits, jurisdiction)."""

EDE_STALE_ANSWER = 3

# Entry layout (a list, for speed): see Cache._store.
_ANSWER, _EXPIRES, _STORED, _VERSION, _TTLS, _MEMO_UNTIL, _MEMO, _STALE_UNTIL = range(8)


class Cache:
    """The answer cache handler."""

    def __init__(
        self,
        config: CacheConfig,
        policy: PolicyHolder,
        metrics: DNSMetrics,
        clock: Callable[[], float],
        next_handler: Handler,
    ) -> None:
        self.config = config
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        self.next = next_handler
        self.entries: OrderedDict[CacheKey, list[object]] = OrderedDict()
        # jurisdiction -> query after its ID -> entry, for exact-case hits (``fast``);
        # nested rather than keyed by a pair, so no key tuple is made per query or kept.
        self._index: dict[str, dict[bytes, list[object]]] = {}
        metrics.cache_size = self.entries.__len__
        policy.on_swap(self._forget)

    def _forget(self, _new: object) -> None:
        self._index.clear()  # entries of the old version can no longer be served

    def __call__(self, ctx: Context) -> Result:
        """Serve a fresh entry of the current policy version, else ask ``next`` and store."""
        data = ctx.data
        q = ctx.q
        # Keys hold the question with a lowercase name (RFC 4343). Most clients ask in
        # lowercase, so the raw question is tried first and lowercasing is skipped.
        key = (data[12 : q.qend], q.bits, ctx.jurisdiction)
        entries = self.entries
        e = entries.get(key)
        exact = True
        if e is None:
            low = data[12 : q.name_end].lower() + data[q.name_end : q.qend]
            if low != key[0]:
                key = (low, q.bits, ctx.jurisdiction)
                e = entries.get(key)
                exact = False
        version = self.policy.token  # entries belong to the snapshot that decided them
        if e is not None:
            now = self.clock()
            if now < e[_EXPIRES] and e[_VERSION] is version:  # type: ignore[operator]
                self.metrics.cache_hits += 1
                if now < e[_MEMO_UNTIL]:  # type: ignore[operator]
                    answer: Answer = e[_MEMO]  # type: ignore[assignment]
                else:
                    answer = self._restamp(key, e, now)
                if exact:
                    self._remember(ctx, e)
                    return answer
                # Mixed-case query: the responder must put the client's question back.
                return Answer(
                    answer.kind, answer.body, answer.verdict, answer.reason, scan=answer.scan
                )
        self.metrics.cache_misses += 1
        result = self.next(ctx)
        if result.__class__ is Answer:  # blocks and other local answers: store now
            answer = self._store(key, version, result)
            if exact:  # the next identical query can take the fast path at once
                e = entries.get(key)
                if e is not None and e[_MEMO] is answer:
                    self._remember(ctx, e)
            return answer
        return then(result, partial(self._store, key, version))

    def fast(self, _next_step: FastStep | None) -> FastStep:
        """Answer an indexed exact-case hit whose memo is fresh; None otherwise (no trace)."""
        index = self._index
        clock = self.clock
        policy = self.policy
        metrics = self.metrics

        def step(data: bytes, key: bytes, host: str, jurisdiction: str) -> Answer | None:
            by_query = index.get(jurisdiction)
            if by_query is None:
                return None
            e = by_query.get(key)
            if e is None:
                return None
            now = clock()
            if now < e[_MEMO_UNTIL] and now < e[_EXPIRES] and e[_VERSION] is policy.token:  # type: ignore[operator]
                metrics.cache_hits += 1
                answer: Answer = e[_MEMO]  # type: ignore[assignment]
                return answer
            return None

        return step

    def _remember(self, ctx: Context, e: list[object]) -> None:
        """Index entry ``e`` under this exact query for the fast step."""
        by_query = self._index.get(ctx.jurisdiction)
        if by_query is None:
            by_query = self._index[ctx.jurisdiction] = {}
        elif len(by_query) >= self.config.max_entries:
            by_query.clear()
        by_query[ctx.after_id] = e

    def _restamp(self, key: CacheKey, e: list[object], now: float) -> Answer:
        """Count TTLs down (at most once a second per entry) and mark the entry used."""
        self.entries.move_to_end(key)  # LRU order, refreshed at the same once-a-second pace
        answer: Answer = e[_ANSWER]  # type: ignore[assignment]
        sec = int(now)
        if answer.body is not None and answer.scan is not None:
            age = sec - e[_STORED]  # type: ignore[operator]
            body = wire.patch_ttls(answer.body, answer.scan.ttl_offsets, e[_TTLS], age)  # type: ignore[arg-type]
            answer = Answer(AnswerKind.CACHED, body, answer.verdict, "cache hit", scan=answer.scan)
            answer.tail = body[2:]
            # TTLs are always recomputed from _TTLS and the age, so the restamped answer
            # can stand for the entry: one copy of the reply per entry, not two.
            e[_ANSWER] = answer
        # A bodyless answer (a block) has no TTLs to count down: its memo lasts its life.
        e[_MEMO_UNTIL] = sec + 1 if answer.body is not None else e[_EXPIRES]
        e[_MEMO] = answer
        return answer

    def _store(self, key: CacheKey, version: object, answer: Answer) -> Answer:
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
        sec = int(now)
        ttls = (
            wire.read_ttls(answer.body, answer.scan.ttl_offsets)
            if answer.body is not None and answer.scan is not None
            else ()
        )
        memo = answer
        if answer.body is not None:
            memo = Answer(
                AnswerKind.CACHED, answer.body, answer.verdict, "cache hit", scan=answer.scan
            )
            memo.tail = answer.body[2:]
        entry: list[object] = [
            memo,  # the forwarded answer's body and scan, as a cache hit (see _restamp)
            now + lifetime,
            sec,
            version,
            ttls,
            sec + 1 if answer.body is not None else now + lifetime,  # see _restamp
            memo,
            now + lifetime + cfg.max_stale,
        ]
        entries = self.entries
        entries[key] = entry
        entries.move_to_end(key)
        while len(entries) > cfg.max_entries:
            entries.popitem(last=False)
        return answer

    def _stale(self, key: CacheKey, failed: Answer) -> Answer:
        """RFC 8767: an expired forwarded answer beats SERVFAIL while within max_stale."""
        if not self.config.serve_stale:
            return failed
        e = self.entries.get(key)
        if e is None or self.clock() > e[_STALE_UNTIL]:  # type: ignore[operator]
            return failed
        answer: Answer = e[_ANSWER]  # type: ignore[assignment]
        if answer.body is None or answer.scan is None:
            return failed  # only data from upstream is served stale, never an old block
        self.metrics.stale_served += 1
        body = wire.set_ttls(answer.body, answer.scan.ttl_offsets, self.config.stale_ttl)
        scan = answer.scan
        if scan.opt_start >= 0 and scan.opt_end == len(body):
            # EDNS client: say so with EDE 3 Stale Answer (RFC 8914 section 4.4).
            body = wire.append_option(body, scan.opt_start, wire.ede_option(EDE_STALE_ANSWER))
        return Answer(
            AnswerKind.STALE, body, reason="stale: every upstream failed", scan=answer.scan
        )

    def clear(self) -> None:
        """Drop every entry."""
        self.entries.clear()
        self._index.clear()


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Present unless ``[dns.cache] max_entries = 0``."""
    assert next_handler is not None
    cfg = services.config.cache
    if cfg.max_entries <= 0:
        return None
    return Cache(cfg, services.policy, services.metrics, services.clock, next_handler)
