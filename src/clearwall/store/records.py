"""Immutable values the store returns beyond the policy model: appeals, subscriptions, tokens."""

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
