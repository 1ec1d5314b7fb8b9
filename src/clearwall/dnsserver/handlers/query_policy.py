"""Query policy: is the question name blocked for this client's jurisdiction?

One ``snapshot.match`` per query that misses the cache; a block becomes a BLOCKED
answer citing the orders, cached for ``[dns.block] ttl``.
"""

from __future__ import annotations

from collections.abc import Callable

from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services
from clearwall.dnsserver.policyholder import PolicyHolder


class QueryPolicy:
    """Blocks names the policy blocks; passes the rest on."""

    def __init__(
        self, policy: PolicyHolder, ttl: int, wall: Callable[[], float], next_handler: Handler
    ) -> None:
        self.policy = policy
        self.ttl = ttl
        self.wall = wall
        self.next = next_handler

    def __call__(self, ctx: Context) -> Result:
        """Match the question name."""
        verdict = self.policy.current.match(ctx.qname, ctx.jurisdiction, self.wall())
        if verdict.blocked:
            # The snapshot's verdicts are per name, so an answer per verdict is as cheap
            # as any memo; the reason is derived from the verdict when someone asks.
            return Answer(AnswerKind.BLOCKED, None, verdict, "blocked by policy", self.ttl)
        return self.next(ctx)


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on (an empty policy blocks nothing)."""
    assert next_handler is not None
    return QueryPolicy(services.policy, services.config.block.ttl, services.wall, next_handler)
