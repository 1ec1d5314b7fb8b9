"""Answer kinds: what every handler returns, with its kind, reason and deciding order.

One table (``KIND_DECISION``) names each kind for metrics and logs; the rcode and EDE
of a block come from the order's action and basis (``RCODE_FOR_ACTION``, ``model.ede_for``).
"""

from __future__ import annotations

import enum

from clearwall.dnsserver import wire
from clearwall.model import Action, Verdict


class AnswerKind(enum.Enum):
    """What sort of answer a handler produced."""

    FORWARDED = "forwarded"  # fresh from an upstream (after response policy)
    CACHED = "cached"  # served from the answer cache
    STALE = "stale"  # served past expiry because every upstream failed (RFC 8767)
    BLOCKED = "blocked"  # a policy order withholds the name or an answer address
    REFUSED = "refused"  # the client is not allowed to use this server (ACL)
    DROPPED = "dropped"  # rate limited: no reply at all
    TRUNCATED = "truncated"  # rate limited: TC reply so a real client retries over TCP
    MINIMAL = "minimal"  # synthesized minimal reply (RFC 8482 ANY)
    LOCAL = "local"  # answered from built-in local data (special-use names, RFC 6761)
    FAILED = "failed"  # no upstream gave a usable answer: SERVFAIL


KIND_DECISION: dict[AnswerKind, str] = {
    AnswerKind.FORWARDED: "allow",
    AnswerKind.CACHED: "allow",
    AnswerKind.STALE: "allow",
    AnswerKind.BLOCKED: "block",
    AnswerKind.REFUSED: "refuse",
    AnswerKind.DROPPED: "ratelimit",
    AnswerKind.TRUNCATED: "ratelimit",
    AnswerKind.MINIMAL: "allow",
    AnswerKind.LOCAL: "local",
    AnswerKind.FAILED: "fail",
}
"""The metric/log label of each kind."""

RCODE_FOR_ACTION: dict[Action, int] = {
    Action.NXDOMAIN: wire.NXDOMAIN,
    Action.NODATA: wire.NOERROR,
    Action.REFUSED: wire.REFUSED,
    Action.SINKHOLE: wire.NOERROR,
}
"""The rcode of a block answer, by the order's action."""


class Answer:
    """One handler's answer; immutable by convention once returned (caches share it).

    ``body`` is a complete reply message for kinds that carry one (forwarded, cached,
    stale, and local answers made for one query): its ID and question case are replaced
    by the client's when rendered, so the question must have the query's length. Block,
    refusal, failure and minimal answers usually carry no body; the responder renders
    them from ``verdict``/``kind``, with ``ede`` (ready EDE options, possibly none) in
    place of the kind's own EDE when it is set.
    """

    __slots__ = (
        "body",
        "decision",
        "ede",
        "kind",
        "lifetime",
        "reason",
        "scan",
        "tail",
        "token",
        "until",
        "verdict",
    )

    def __init__(
        self,
        kind: AnswerKind,
        body: bytes | None = None,
        verdict: Verdict | None = None,
        reason: str = "",
        lifetime: int = -1,
        scan: wire.ReplyScan | None = None,
        ede: bytes | None = None,
    ) -> None:
        self.kind = kind
        self.decision = KIND_DECISION[kind]  # a str: cheap to hash for the metrics key
        self.body = body
        self.verdict = verdict
        self.reason = reason
        self.lifetime = lifetime  # seconds the answer may be cached; -1 = never
        self.scan = scan  # the body's record scan (TTL offsets, CNAMEs, addresses)
        # EDE options to send instead of the kind's own (refusals: 18, failures: 22):
        # an upstream's own EDEs, or b"" for none (RFC 8914).
        self.ede = ede
        # body[2:] when the body's question is byte-identical to the query being answered
        # (set by the cache on exact-case hits): the reply is then the query ID + tail.
        self.tail: bytes | None = None
        # Set by the cache on answers it serves again: fresh until this clock time, for
        # the policy version ``token`` names.
        self.until = 0.0
        self.token: object = None

    @property
    def order_id(self) -> int | None:
        """The deciding order's id for blocks, else None."""
        if self.verdict is not None and self.verdict.citations:
            return self.verdict.citations[0].order.id
        return None

    def __repr__(self) -> str:
        return f"Answer({self.kind.value}, order={self.order_id}, reason={self.reason!r})"


DROP = Answer(AnswerKind.DROPPED, reason="rate limited")
"""The shared answer that sends nothing."""
FAILED = Answer(AnswerKind.FAILED, reason="no upstream answered")
"""The shared answer when no upstream answered (SERVFAIL, EDE 22)."""
NOT_RECURSED = Answer(
    AnswerKind.REFUSED,
    reason="RD=0 and not cached: no recursion asked (RFC 1034 section 4.3.1)",
    ede=wire.ede_option(20),  # Not Authoritative (RFC 8914 section 4.21), as Unbound
)
"""The shared answer to an RD=0 query the cache cannot answer (REFUSED, EDE 20)."""
MINIMAL_ANY = Answer(AnswerKind.MINIMAL, reason="RFC 8482 minimal ANY answer")
"""The shared RFC 8482 answer to ANY queries."""
