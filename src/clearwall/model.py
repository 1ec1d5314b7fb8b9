"""Shared values of clearwall: policy enums, the EDE table, and the matcher's verdict.

Everything here is an immutable value with no I/O, imported by the policy core, the
formats, the store, the DNS chain, the web app and the probe alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AuthorityKind(enum.StrEnum):
    """What kind of body an authority is; decides the EDE code its blocks carry."""

    COURT = "court"
    REGULATOR = "regulator"
    CERT = "cert"
    OPERATOR = "operator"


class Category(enum.StrEnum):
    """Why an order blocks: the category published with it."""

    MALWARE = "malware"
    PHISHING = "phishing"
    BOTNET = "botnet"
    SPAM = "spam"
    COURT_ORDER = "court-order"
    REGULATORY = "regulatory"
    OPERATOR_POLICY = "operator-policy"
    SUBSCRIBER_FILTER = "subscriber-filter"


class Action(enum.StrEnum):
    """How a blocked query is answered."""

    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    REFUSED = "refused"
    SINKHOLE = "sinkhole"


# When two orders block a name at the same specificity with different actions, the first
# action in this tuple wins: the answer that tells the client most plainly that the name
# is withheld (REFUSED, NXDOMAIN) beats the quieter ones.
ACTION_PRECEDENCE: tuple[Action, ...] = (
    Action.REFUSED,
    Action.NXDOMAIN,
    Action.NODATA,
    Action.SINKHOLE,
)


class OrderStatus(enum.StrEnum):
    """Lifecycle state of an order as stored; expiry by date is also checked at match time."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class RuleKind(enum.StrEnum):
    """What a rule selects.

    Name selectors hold a normalized domain name; IP selectors hold a CIDR.
    ``*_SUBTREE`` covers the name itself and every name below it; ``*_WILDCARD`` covers
    only the names strictly below it (RPZ ``*.name``); ``*_EXACT`` only the name itself.
    """

    EXACT = "exact"
    SUBTREE = "subtree"
    WILDCARD = "wildcard"
    ALLOW_EXACT = "allow-exact"
    ALLOW_SUBTREE = "allow-subtree"
    ALLOW_WILDCARD = "allow-wildcard"
    RESPONSE_IP = "response-ip"
    ALLOW_RESPONSE_IP = "allow-response-ip"

    @property
    def is_allow(self) -> bool:
        """True for exceptions (allow rules)."""
        return self.value.startswith("allow-")

    @property
    def is_ip(self) -> bool:
        """True for response-IP selectors (value is a CIDR, not a name)."""
        return self in (RuleKind.RESPONSE_IP, RuleKind.ALLOW_RESPONSE_IP)


class EDECode(enum.IntEnum):
    """Extended DNS Error codes clearwall sends (RFC 8914 section 4)."""

    OTHER = 0
    BLOCKED = 15
    CENSORED = 16
    FILTERED = 17
    PROHIBITED = 18


def ede_for(category: Category, authority_kind: AuthorityKind) -> EDECode:
    """The EDE code a block carries, chosen by its basis.

    Court and regulator orders (or court-order/regulatory categories) are censorship in
    RFC 8914's sense: 16 Censored. Subscriber-chosen filtering is 17 Filtered. The
    operator's own security and policy blocks are 15 Blocked.
    """
    if category is Category.SUBSCRIBER_FILTER:
        return EDECode.FILTERED
    if authority_kind in (AuthorityKind.COURT, AuthorityKind.REGULATOR) or category in (
        Category.COURT_ORDER,
        Category.REGULATORY,
    ):
        return EDECode.CENSORED
    return EDECode.BLOCKED


class Decision(enum.StrEnum):
    """The matcher's answer for a name or address."""

    ALLOW = "allow"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What the data plane needs to cite one order in a block answer.

    Carried inside the compiled snapshot so that no database is read per query.
    """

    id: int
    jurisdiction: str  # the order's jurisdiction code, or "*" for all-jurisdiction orders
    authority: str
    authority_kind: AuthorityKind
    category: Category
    action: Action
    title: str
    legal_basis: str
    reference: str
    contacts: tuple[str, ...] = ()
    url: str = ""

    @property
    def ede(self) -> EDECode:
        """The EDE code this order's blocks carry."""
        return ede_for(self.category, self.authority_kind)


@dataclass(frozen=True, slots=True)
class Citation:
    """One order that applies to a matched name, with the rule that matched."""

    order: OrderRef
    rule: str  # human form of the matching rule, e.g. "subtree example.com"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The matcher's result: allow or block, the action, and every order that applies.

    ``citations`` lists each blocking order (for a block) or the exception that allowed
    the name (for an allow that overrode a block); empty for names no rule touches.
    """

    decision: Decision
    action: Action | None = None
    citations: tuple[Citation, ...] = ()

    @property
    def blocked(self) -> bool:
        """True when the name or address must not be resolved for this client."""
        return self.decision is Decision.BLOCK

    @property
    def ede(self) -> EDECode | None:
        """The EDE code of the deciding (first) citation, for block answers."""
        if not self.blocked or not self.citations:
            return None
        return self.citations[0].order.ede


ALLOWED = Verdict(Decision.ALLOW)
"""The shared verdict for names no rule touches (the hot path returns this object)."""
