"""Response policy: check every CNAME target and A/AAAA address of an upstream answer.

A name that is allowed can still lead to a blocked one through a CNAME chain, or
resolve to an address a response-IP order blocks; such an answer is replaced by the
block of the first order hit. It stands inside the cache, so the decision is cached
under the client's jurisdiction like any other answer.
"""

from __future__ import annotations

from collections.abc import Callable

from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services, then
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView


class ResponsePolicy:
    """Replaces forwarded answers that lead to blocked names or addresses."""

    def __init__(
        self, policy: PolicyHolder, ttl: int, wall: Callable[[], float], next_handler: Handler
    ) -> None:
        self.policy = policy
        self.ttl = ttl
        self.wall = wall
        self.next = next_handler

    def __call__(self, ctx: Context) -> Result:
        """Inspect what ``next`` returns."""
        jurisdiction = ctx.jurisdiction
        return then(self.next(ctx), lambda answer: self.check(answer, jurisdiction))

    def check(self, answer: Answer, jurisdiction: str) -> Answer:
        """The answer itself, or a block answer if a CNAME target or address is blocked."""
        if answer.kind is not AnswerKind.FORWARDED:
            return answer
        return screen(answer, self.policy.current, jurisdiction, self.ttl, self.wall())


def screen(
    answer: Answer, policy: PolicyView, jurisdiction: str, ttl: int, now: float | None = None
) -> Answer:
    """``answer``, or the block of the first order hit by a CNAME target or address in it
    at ``now`` (epoch seconds; None: the current time).

    The handler screens what the upstream returns; the cache screens a stale answer made
    under an older policy before serving it (RFC 8767 data is still policy-checked data).
    """
    scan = answer.scan
    if scan is None:
        return answer
    for target in scan.cnames:
        verdict = policy.match(target, jurisdiction, now)
        if verdict.blocked:
            return Answer(
                AnswerKind.BLOCKED,
                verdict=verdict,
                lifetime=ttl,
                reason=f"CNAME target {target} blocked",
            )
    for address in scan.addresses:
        verdict = policy.match_ip(address, jurisdiction, now)
        if verdict.blocked:
            return Answer(
                AnswerKind.BLOCKED, verdict=verdict, lifetime=ttl, reason="answer address blocked"
            )
    return answer


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on."""
    assert next_handler is not None
    return ResponsePolicy(services.policy, services.config.block.ttl, services.wall, next_handler)
