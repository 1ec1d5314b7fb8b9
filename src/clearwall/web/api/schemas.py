"""Request and response bodies of the admin API (they are the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from clearwall.ledger.entries import RequestAsk
from clearwall.model import Action, AuthorityKind, Category, OrderStatus
from clearwall.policy.model import Authority, Jurisdiction, Order
from clearwall.store.records import (
    Appeal,
    AppealStatus,
    CrossBorderRequest,
    RequestStatus,
    Subscription,
)

MAX_ID = 2**31 - 1  # ids are 32-bit in the schema; larger numbers cannot name a record

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]

CODE_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,31}$"
CONTACT_PATTERN = r"^(mailto:|tel:|https?://)\S+$"

FORMATS = ("auto", "domains", "hosts", "adblock", "dnsmasq", "rpz", "unbound", "wildcard")


class Body(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    """Every error answer: one human sentence."""

    detail: str


class JurisdictionIn(Body):
    """A new jurisdiction and the client networks that belong to it."""

    code: str = Field(pattern=CODE_PATTERN, examples=["fr"])
    name: str = Field(min_length=1, max_length=200, examples=["France"])
    networks: list[str] = Field(
        default_factory=list, max_length=10_000, examples=[["192.0.2.0/24"]]
    )


class JurisdictionOut(BaseModel):
    """A jurisdiction as published."""

    code: str
    name: str
    networks: list[str]

    @classmethod
    def of(cls, j: Jurisdiction) -> JurisdictionOut:
        """Build from the policy value."""
        return cls(code=j.code, name=j.name, networks=[str(n) for n in j.networks])


class AuthorityIn(Body):
    """A new authority, acting in exactly one jurisdiction."""

    name: str = Field(min_length=1, max_length=300)
    kind: AuthorityKind
    jurisdiction: str = Field(pattern=CODE_PATTERN)
    contacts: list[Annotated[str, Field(pattern=CONTACT_PATTERN, max_length=500)]] = Field(
        default_factory=list, max_length=20
    )


class AuthorityOut(BaseModel):
    """An authority as published."""

    id: int
    name: str
    kind: AuthorityKind
    jurisdiction: str
    contacts: list[str]

    @classmethod
    def of(cls, a: Authority) -> AuthorityOut:
        """Build from the policy value."""
        return cls(
            id=a.id,
            name=a.name,
            kind=a.kind,
            jurisdiction=a.jurisdiction,
            contacts=list(a.contacts),
        )


class OrderIn(Body):
    """A new order: the fields of ``clearwall orders add`` plus its rules as list text."""

    authority: int = Field(ge=1, le=MAX_ID, description="id of the issuing authority")
    title: str = Field(min_length=1, max_length=2000)
    legal_basis: str = Field(min_length=1, max_length=4000)
    reference: str = Field(min_length=1, max_length=300)
    category: Category
    action: Action = Action.NXDOMAIN
    issued: dt.date | None = None
    effective_from: dt.datetime | None = None
    expires: dt.datetime | None = None
    document_url: str = Field(default="", max_length=2000)
    all_jurisdictions: bool = False
    rules: str = Field(default="", max_length=50_000_000, description="the list text")
    format: str = Field(default="auto", pattern="^(" + "|".join(FORMATS) + ")$")


class AmendIn(Body):
    """Rules to add and/or remove (list text, any supported format) and why."""

    add: str = Field(default="", max_length=50_000_000)
    remove: str = Field(default="", max_length=50_000_000)
    format: str = Field(default="auto", pattern="^(" + "|".join(FORMATS) + ")$")
    reason: str = Field(min_length=1, max_length=4000)


class RevokeIn(Body):
    """Why an order is withdrawn (published on the log)."""

    reason: str = Field(min_length=1, max_length=4000)


class ParseIssueOut(BaseModel):
    """A list line that was not imported as written."""

    line: int
    message: str


class OrderOut(BaseModel):
    """An order as published, with its rule count and public links."""

    id: int
    authority: AuthorityOut
    jurisdiction: str
    title: str
    legal_basis: str
    reference: str
    category: Category
    action: Action
    issued: dt.date
    effective_from: dt.datetime
    expires: dt.datetime | None
    document_url: str
    status: OrderStatus
    all_jurisdictions: bool
    log_index: int | None
    rule_count: int
    url: str
    issues: list[ParseIssueOut] = Field(default_factory=list)

    @classmethod
    def of(
        cls,
        o: Order,
        a: Authority,
        rule_count: int,
        base_url: str,
        issues: list[ParseIssueOut] | None = None,
    ) -> OrderOut:
        """Build from the policy values."""
        return cls(
            id=o.id,
            authority=AuthorityOut.of(a),
            jurisdiction="*" if o.all_jurisdictions else a.jurisdiction,
            title=o.title,
            legal_basis=o.legal_basis,
            reference=o.reference,
            category=o.category,
            action=o.action,
            issued=o.issued,
            effective_from=o.effective_from,
            expires=o.expires,
            document_url=o.document_url,
            status=o.status,
            all_jurisdictions=o.all_jurisdictions,
            log_index=o.log_index,
            rule_count=rule_count,
            url=f"{base_url}/orders/{o.id}",
            issues=issues or [],
        )


class RuleOut(BaseModel):
    """One rule of an order."""

    kind: str
    value: str
    action: Action | None


class SubscriptionIn(Body):
    """Subscribe an order to a list file (operators only) or an http(s) URL."""

    order_id: int = Field(ge=1, le=MAX_ID)
    source: str = Field(min_length=1, max_length=2000)
    format: str = Field(default="auto", pattern="^(" + "|".join(FORMATS) + ")$")
    refresh_seconds: int = Field(default=86_400, ge=60, le=365 * 86_400)


class SubscriptionOut(BaseModel):
    """A subscription and the outcome of its last refresh."""

    id: int
    order_id: int
    source: str
    format: str
    refresh_seconds: int
    last_refresh: dt.datetime | None
    last_status: str

    @classmethod
    def of(cls, s: Subscription) -> SubscriptionOut:
        """Build from the store record."""
        return cls(
            id=s.id,
            order_id=s.order_id,
            source=s.source,
            format=s.format,
            refresh_seconds=s.refresh_seconds,
            last_refresh=s.last_refresh,
            last_status=s.last_status,
        )


class RefreshOut(BaseModel):
    """What a subscription refresh changed."""

    subscription: SubscriptionOut
    added: int
    removed: int
    rule_count: int
    issues: list[ParseIssueOut]


class AppealOut(BaseModel):
    """An appeal; ``contact`` is filled only for callers allowed to see it."""

    id: int
    order_id: int
    name: str
    reason: str
    status: AppealStatus
    decision: str
    filed_at: dt.datetime
    decided_at: dt.datetime | None
    filed_log_index: int | None
    decided_log_index: int | None
    contact: str | None = None

    @classmethod
    def of(cls, a: Appeal, private: bool) -> AppealOut:
        """Build from the store record; the contact only when ``private``."""
        return cls(
            id=a.id,
            order_id=a.order_id,
            name=a.name,
            reason=a.reason,
            status=a.status,
            decision=a.decision,
            filed_at=a.filed_at,
            decided_at=a.decided_at,
            filed_log_index=a.filed_log_index,
            decided_log_index=a.decided_log_index,
            contact=a.contact if private else None,
        )


class DecideIn(Body):
    """The decision on an open appeal."""

    outcome: AppealStatus = Field(description="upheld or rejected")
    explanation: str = Field(min_length=1, max_length=4000)


class CountOut(BaseModel):
    """One bucket of a statistic."""

    key: str
    count: int


class StatsOut(BaseModel):
    """Aggregate policy statistics and the gateway's blocked-query counts by category."""

    log_size: int
    orders_active: int
    orders_total: int
    rules_active: int
    appeals_open: int
    orders_by_category: list[CountOut]
    orders_by_jurisdiction: list[CountOut]
    orders_by_authority: list[CountOut]
    rules_by_category: list[CountOut]
    blocked_queries_by_category: list[CountOut]


class JurisdictionVerdictOut(BaseModel):
    """The verdict for a name for the clients of one jurisdiction."""

    jurisdiction: str
    blocked: bool
    action: Action | None
    orders: list[int]
    rules: list[str]


class LookupOut(BaseModel):
    """Whether a name is blocked, per jurisdiction."""

    name: str
    unicode: str
    log_size: int
    verdicts: list[JurisdictionVerdictOut]


class RequestIn(Body):
    """A cross-border request: an authority of one jurisdiction asks another to block (or
    lift a block of) names; it blocks nothing by itself."""

    authority: int = Field(ge=1, le=MAX_ID, description="id of the requesting authority")
    to: str = Field(pattern=CODE_PATTERN, description="the receiving jurisdiction")
    ask: RequestAsk = RequestAsk.BLOCK
    category: Category
    legal_basis: str = Field(min_length=1, max_length=4000, description="in the sender's law")
    reference: str = Field(min_length=1, max_length=300)
    names: str = Field(min_length=1, max_length=50_000_000, description="the list text")
    format: str = Field(default="auto", pattern="^(" + "|".join(FORMATS) + ")$")


class AcceptIn(Body):
    """Acceptance of a request: the receiving jurisdiction's own order that answers it."""

    authority: int = Field(ge=1, le=MAX_ID, description="the receiving side's authority")
    legal_basis: str = Field(min_length=1, max_length=4000, description="in the receiver's law")
    reference: str = Field(min_length=1, max_length=300)
    title: str = Field(default="", max_length=2000)
    action: Action = Action.NXDOMAIN
    expires: dt.datetime | None = None
    document_url: str = Field(default="", max_length=2000)
    reason: str = Field(default="", max_length=4000)


class CloseIn(Body):
    """A refusal (by the receiving side) or a withdrawal (by the requesting side)."""

    authority: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="deciding authority (withdraw: the filer)"
    )
    reason: str = Field(min_length=1, max_length=4000)


class RequestOut(BaseModel):
    """A cross-border request as the public sees it (nothing in it is private)."""

    id: int
    authority_id: int
    from_jurisdiction: str
    to_jurisdiction: str
    ask: RequestAsk
    category: Category
    legal_basis: str
    reference: str
    names: list[str] = Field(description="canonical rule lines, e.g. 'subtree a.example'")
    rules_digest: str
    status: RequestStatus
    decision: str
    decided_by: int | None
    order_id: int | None
    filed_at: dt.datetime
    decided_at: dt.datetime | None
    time_to_decision_seconds: float | None
    filed_log_index: int | None
    decided_log_index: int | None

    @classmethod
    def of(cls, r: CrossBorderRequest) -> RequestOut:
        """Build from the store record."""
        took = r.time_to_decision
        return cls(
            id=r.id,
            authority_id=r.authority_id,
            from_jurisdiction=r.from_jurisdiction,
            to_jurisdiction=r.to_jurisdiction,
            ask=RequestAsk(r.ask),
            category=Category(r.category),
            legal_basis=r.legal_basis,
            reference=r.reference,
            names=list(r.rules),
            rules_digest=r.rules_digest,
            status=r.status,
            decision=r.decision,
            decided_by=r.decided_by,
            order_id=r.order_id,
            filed_at=r.filed_at,
            decided_at=r.decided_at,
            time_to_decision_seconds=None if took is None else took.total_seconds(),
            filed_log_index=r.filed_log_index,
            decided_log_index=r.decided_log_index,
        )


class AcceptOut(BaseModel):
    """An accepted request and the order it became."""

    request: RequestOut
    order: OrderOut
