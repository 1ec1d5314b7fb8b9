"""Immutable values the store returns beyond the policy model: appeals, requests, subscriptions,
tokens."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class AppealStatus(enum.StrEnum):
    """Where an appeal stands: open until the authority or operator decides it."""

    OPEN = "open"
    UPHELD = "upheld"  # the appellant was right: the order was amended or revoked
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Appeal:
    """An appeal against an order; ``contact`` is private, everything else is public."""

    id: int
    order_id: int
    name: str
    contact: str
    reason: str
    status: AppealStatus
    decision: str
    filed_at: dt.datetime
    decided_at: dt.datetime | None = None
    filed_log_index: int | None = None
    decided_log_index: int | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A list file or URL whose contents are periodically imported into an order."""

    id: int
    order_id: int
    source: str
    format: str
    refresh_seconds: int
    last_refresh: dt.datetime | None = None
    last_status: str = ""


class TokenRole(enum.StrEnum):
    """What an API token may do."""

    OPERATOR = "operator"  # everything
    AUTHORITY = "authority"  # orders of its own authority's jurisdiction only
    AUDITOR = "auditor"  # read-only, including non-public fields


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored API token: only its hash is kept, the secret is shown once at creation."""

    id: int
    role: TokenRole
    authority_id: int | None
    label: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """True until the token is revoked."""
        return self.revoked_at is None


class RequestStatus(enum.StrEnum):
    """Where a cross-border request stands: open until decided or withdrawn."""

    OPEN = "open"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class CrossBorderRequest:
    """A request by an authority of ``from_jurisdiction`` to ``to_jurisdiction`` to block
    (or lift a block of) ``rules``; everything in it is public. ``order_id`` is the
    receiving jurisdiction's own order when it was accepted."""

    id: int
    authority_id: int
    from_jurisdiction: str
    to_jurisdiction: str
    ask: str  # block | lift (ledger.entries.RequestAsk)
    category: str
    legal_basis: str
    reference: str
    rules: tuple[str, ...]  # canonical rule lines, sorted
    rules_digest: str
    status: RequestStatus
    decision: str
    filed_at: dt.datetime
    decided_by: int | None = None
    order_id: int | None = None
    decided_at: dt.datetime | None = None
    filed_log_index: int | None = None
    decided_log_index: int | None = None

    @property
    def time_to_decision(self) -> dt.timedelta | None:
        """How long the receiving side took to decide (None while open or withdrawn)."""
        if self.decided_at is None or self.status is RequestStatus.WITHDRAWN:
            return None
        return self.decided_at - self.filed_at
