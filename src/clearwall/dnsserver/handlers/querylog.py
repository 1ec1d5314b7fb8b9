"""Query log: records every answer the chain (and its fast path) gives, off the reply path.

Built only when ``[logging] query_log`` is on; otherwise it is not in the chain, and the
fast path is the one without it (zero cost when off). It stands outside the responder,
so it sees each rendered reply (its rcode) after it is ready; recording is one
``Recorder.add`` (a dictionary lookup and a counter for an answer repeated within the
second), never I/O; client addresses are truncated when the groups are shipped.

The fused miss path (``dnsserver.forward``) records what it answers itself: the
answers it sends from C through ``record_forwarded``, those it hands to its Python
continuation through ``record``, so a first-time name is recorded whichever way it goes.

On the UDP fast path (``wrap_fast``) the replies come from the responder's kept
renderings: the record's decision and deciding order are read back from the entry that
answered (the fused path's ``ReplyTable``, or the responder's dictionary), and the full
list of orders from what this handler saw when that answer was first given.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING

from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastPath, Handler, Result, Services
from clearwall.dnsserver.handlers.jurisdiction import ClientJurisdiction
from clearwall.dnsserver.handlers.responder import Responder
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView

if TYPE_CHECKING:
    from clearwall.querylog.recorder import Recorder

log = logging.getLogger(__name__)
_ORDERS_MAX = 65_536

Meta = Callable[[str, bytes], tuple[str, tuple[int, ...]] | None]
"""(jurisdiction, query after its ID) -> (decision, orders) of the kept reply, or None."""


class QueryLog:
    """Passes every query on and records the answer once the reply is ready."""

    def __init__(self, recorder: Recorder, policy: PolicyHolder, next_handler: Handler) -> None:
        self.recorder = recorder
        self.next = next_handler
        # Blocks the fast path may serve again: query after its ID -> (jurisdiction, order
        # ids), so their records cite every order, as the general path's do.
        self._orders: dict[bytes, tuple[str, tuple[int, ...]]] = {}
        self._failed = False
        policy.on_swap(self._forget)

    def _forget(self, _new: PolicyView) -> None:
        self._orders.clear()
        self.recorder.ship()  # a group never spans two policies

    def __call__(self, ctx: Context) -> Result:
        """Run the chain below, then record its answer."""
        start = perf_counter()
        result = self.next(ctx)
        if result.__class__ is Answer:
            self.record(ctx, result, start)
            return result
        return self._later(ctx, result, start)  # type: ignore[arg-type]

    async def _later(self, ctx: Context, result: Awaitable[Answer], start: float) -> Answer:
        answer = await result
        self.record(ctx, answer, start)
        return answer

    def record(self, ctx: Context, answer: Answer, start: float) -> None:
        """Record ``answer`` to ``ctx`` (its reply rendered), taken at ``start``
        (``perf_counter``); also what the fused miss path's continuation calls."""
        try:
            now = perf_counter()
            reply = ctx.reply
            verdict = answer.verdict
            orders = (
                tuple(c.order.id for c in verdict.citations)
                if verdict is not None and verdict.citations
                else ()
            )
            if orders and answer.kind is AnswerKind.BLOCKED and not ctx.tcp:
                kept = self._orders
                if len(kept) >= _ORDERS_MAX:
                    kept.clear()
                kept[ctx.after_id] = (ctx.jurisdiction, orders)
            self.recorder.add(
                now,
                now - start,
                ctx.host,
                # Header and question only: queries differing in their EDNS options
                # (a DNS cookie per query, say) still count in one group.
                ctx.data[2 : ctx.q.qend],
                ctx.tcp,
                reply[3] & 0x0F if reply else -1,
                ctx.jurisdiction,
                answer.decision,
                orders,
            )
        except Exception:  # the reply must go out whatever happens to its record
            self._report()

    def record_forwarded(
        self, host: str, after_id: bytes, rcode: int, jurisdiction: str, arrived: float
    ) -> None:
        """Record an upstream answer the fused miss path sent (``_forward``'s ``record``):
        what ``record`` would for the chain's own, a FORWARDED answer (decision allow, no
        order), taken at ``arrived`` (``perf_counter``)."""
        try:
            now = perf_counter()
            self.recorder.add(
                now, now - arrived, host, after_id, False, rcode, jurisdiction, "allow", ()
            )
        except Exception:  # the reply went out whatever happens to its record
            self._report()

    def _report(self) -> None:
        if not self._failed:
            self._failed = True
            log.exception("query log record failed (reported once; replies are unaffected)")

    def wrap_fast(self, path: FastPath, handlers: list[Handler]) -> FastPath:
        """The fast path ``path`` of ``handlers`` (the chain below), recording its replies."""
        responder = next((h for h in handlers if isinstance(h, Responder)), None)
        jurisdiction = next((h for h in handlers if isinstance(h, ClientJurisdiction)), None)
        if responder is None:
            log.warning("query log: no responder below it; the fast path is not used")
            return lambda _data, _host: None
        meta = self._meta(responder)
        codes = jurisdiction.fast_state.codes if jurisdiction is not None else {}
        recorder = self.recorder
        groups = recorder.groups

        def logged(data: bytes, host: str) -> bytes | None:
            start = perf_counter()
            out = path(data, host)
            if out is None:
                return None
            now = perf_counter()
            latency = now - start
            after_id = data[2:]
            # Recorder.add, inlined: a repeated answer costs one dictionary lookup.
            key = (int(now), host, after_id, False, out[3] & 0x0F)
            cell = groups.get(key)
            if cell is not None:
                cell[0] += 1  # type: ignore[operator]
                cell[1] += latency  # type: ignore[operator]
                if latency > cell[2]:  # type: ignore[operator]
                    cell[2] = latency
                return out
            try:
                code = codes.get(host, "")
                found = meta(code, after_id)
                decision, orders = found if found is not None else ("allow", ())
                recorder.open(key, latency, code, decision, orders)
            except Exception:
                self._report()
            return out

        return logged

    def _meta(self, responder: Responder) -> Meta:
        """How to read back what a fast-path reply was (the responder keeps it)."""
        kept = self._orders
        table = responder.table
        if table is not None:
            get = table.get

            def from_table(code: str, key: bytes) -> tuple[str, tuple[int, ...]] | None:
                entry = get(code, key)
                if entry is None:
                    return None
                order = entry[3]
                decision = str(entry[2][2])  # type: ignore[index]
                if not isinstance(order, int):
                    return decision, ()
                seen = kept.get(key)
                if seen is not None and seen[0] == code and seen[1][0] == order:
                    return decision, seen[1]
                return decision, (order,)

            return from_table
        replies = responder._replies

        def from_replies(_code: str, key: bytes) -> tuple[str, tuple[int, ...]] | None:
            entry = replies.get(key)
            if entry is None:
                return None
            verdict = entry[0].verdict
            orders = (
                tuple(c.order.id for c in verdict.citations)
                if verdict is not None and verdict.citations
                else ()
            )
            return entry[0].decision, orders

        return from_replies


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """On only with a recorder (``[logging] query_log = true``)."""
    assert next_handler is not None
    if services.querylog is None:
        return None
    return QueryLog(services.querylog, services.policy, next_handler)
