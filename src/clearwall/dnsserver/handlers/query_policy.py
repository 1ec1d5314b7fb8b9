"""Query policy: is the question name blocked for this client's jurisdiction?

One ``snapshot.match`` per query that misses the cache; a block becomes a BLOCKED
answer citing the orders, cached for ``[dns.block] ttl``.
"""

from __future__ import annotations

from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services
from clearwall.dnsserver.policy import PolicyHolder, PolicyView
from clearwall.model import Verdict


class QueryPolicy:
    """Blocks names the policy blocks; passes the rest on."""

    def __init__(self, policy: PolicyHolder, ttl: int, next_handler: Handler) -> None:
        self.policy = policy
        self.ttl = ttl
        self.next = next_handler
        self._answers: dict[int, tuple[Verdict, Answer]] = {}
        policy.on_swap(self._forget)

    def _forget(self, _new: PolicyView) -> None:
        self._answers = {}

    def block(self, verdict: Verdict) -> Answer:
        """The (memoized) block answer of a verdict."""
        memo = self._answers.get(id(verdict))
        if memo is not None and memo[0] is verdict:
            return memo[1]
        answer = Answer(
            AnswerKind.BLOCKED,
            verdict=verdict,
            lifetime=self.ttl,
            reason=f"blocked by order {verdict.citations[0].order.id}"
            if verdict.citations
            else "blocked",
        )
        if len(self._answers) > 100_000:
            self._answers = {}
        self._answers[id(verdict)] = (verdict, answer)
        return answer

    def __call__(self, ctx: Context) -> Result:
        """Match the question name."""
        verdict = self.policy.current.match(ctx.qname, ctx.jurisdiction)
        if verdict.blocked:
            return self.block(verdict)
        return self.next(ctx)


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on (an empty policy blocks nothing)."""
    assert next_handler is not None
    return QueryPolicy(services.policy, services.config.block.ttl, next_handler)
