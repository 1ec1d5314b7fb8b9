"""The database schema as SQLAlchemy Core tables: the single source the migrations follow."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

# Stable constraint names so that later migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

# SQLite only aliases the rowid (and so auto-increments) for a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC on every backend and returned timezone-aware UTC.

    Naive UTC in a ``timestamp without time zone`` column behaves the same on SQLite and
    PostgreSQL, independent of the session time zone. Naive inputs are taken as UTC.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        """Convert an aware datetime to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        """Attach UTC to the stored naive value."""
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


jurisdictions = Table(
    "jurisdictions",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
)

jurisdiction_networks = Table(
    "jurisdiction_networks",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "jurisdiction",
        String(32),
        ForeignKey("jurisdictions.code", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("cidr", String(64), nullable=False),
    UniqueConstraint("jurisdiction", "cidr"),
)

authorities = Table(
    "authorities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(300), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("jurisdiction", String(32), ForeignKey("jurisdictions.code"), nullable=False),
    Column("contacts", Text, nullable=False, default="[]"),  # JSON array of URIs
    Column("created_at", UTCDateTime, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("authority_id", Integer, ForeignKey("authorities.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("reference", String(300), nullable=False),
    Column("category", String(32), nullable=False),
    Column("action", String(16), nullable=False),
    Column("issued", Date, nullable=False),
    Column("effective_from", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=True),
    Column("document_url", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("all_jurisdictions", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("log_index", BigInteger, nullable=True),  # the entry that published the order
    Column("rules_digest", String(64), nullable=False),
    Column("rule_count", Integer, nullable=False),
    Column("revoked_reason", Text, nullable=True),
    Index("ix_orders_authority_id", "authority_id"),
    Index("ix_orders_status", "status"),
)

rules = Table(
    "rules",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("order_id", Integer, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("value", String(255), nullable=False),
    Column("action", String(16), nullable=True),  # overrides the order's action (RPZ)
    UniqueConstraint("order_id", "kind", "value"),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

log_head = Table(
    "log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("authority_id", Integer, ForeignKey("authorities.id"), nullable=True),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

appeals = Table(
    "appeals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("name", String(255), nullable=False),  # the name the appellant cares about
    Column("contact", Text, nullable=False),  # never published
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | upheld | rejected
    Column("decision", Text, nullable=False, default=""),
    Column("filed_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("filed_log_index", BigInteger, nullable=True),
    Column("decided_log_index", BigInteger, nullable=True),
    Index("ix_appeals_order_id", "order_id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("source", Text, nullable=False),  # file path or URL
    Column("format", String(16), nullable=False, default="auto"),
    Column("refresh_seconds", Integer, nullable=False, default=86400),
    Column("last_refresh", UTCDateTime, nullable=True),
    Column("last_status", Text, nullable=False, default=""),
)

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("authority_id", Integer, ForeignKey("authorities.id"), nullable=False),
    Column("from_jurisdiction", String(32), nullable=False),  # the requesting authority's
    Column("to_jurisdiction", String(32), ForeignKey("jurisdictions.code"), nullable=False),
    Column("ask", String(16), nullable=False),  # block | lift
    Column("category", String(32), nullable=False),
    Column("legal_basis", Text, nullable=False),  # in the sender's law
    Column("reference", String(300), nullable=False),
    Column("rules", Text, nullable=False),  # the canonical rule lines, one a line, sorted
    Column("rule_count", Integer, nullable=False),
    Column("rules_digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # open | accepted | refused | withdrawn
    Column("decision", Text, nullable=False, default=""),  # the reason given on closing
    Column("decided_by", Integer, ForeignKey("authorities.id"), nullable=True),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=True),  # accepted: Y's order
    Column("filed_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("filed_log_index", BigInteger, nullable=True),
    Column("decided_log_index", BigInteger, nullable=True),
    Index("ix_requests_to_jurisdiction", "to_jurisdiction"),
    Index("ix_requests_from_jurisdiction", "from_jurisdiction"),
    Index("ix_requests_order_id", "order_id"),
)

# -- federation: the registries this installation mirrors (clearwall.federation) ----------

mirrors = Table(
    "mirrors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False, unique=True),  # the registry's base URL (before /log)
    Column("vkey", Text, nullable=False),  # the registry's checkpoint verifier key
    Column("jurisdictions", Text, nullable=False),  # JSON object: registry code -> local code
    Column("witnesses", Text, nullable=False, default="[]"),  # JSON array of witness vkeys
    Column("quorum", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    # the last checkpoint verified consistent with everything seen before
    Column("origin", Text, nullable=True),
    Column("size", BigInteger, nullable=False, default=0),
    Column("root_hash", LargeBinary(32), nullable=True),
    Column("checkpoint", Text, nullable=True),
    Column("synced_at", UTCDateTime, nullable=True),
    # the last attempt: ok | unreachable | invalid | refused, and why
    Column("status", String(16), nullable=False, default="new"),
    Column("last_error", Text, nullable=False, default=""),
    Column("attempted_at", UTCDateTime, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
)

mirror_leaves = Table(
    "mirror_leaves",
    metadata,
    Column("mirror_id", Integer, ForeignKey("mirrors.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)

mirror_authorities = Table(
    "mirror_authorities",
    metadata,
    Column("mirror_id", Integer, ForeignKey("mirrors.id", ondelete="CASCADE"), primary_key=True),
    Column("remote_id", Integer, primary_key=True, autoincrement=False),
    Column("local_code", String(32), primary_key=True),
    Column("authority_id", Integer, ForeignKey("authorities.id"), nullable=False),
)

mirror_orders = Table(
    "mirror_orders",
    metadata,
    Column("mirror_id", Integer, ForeignKey("mirrors.id", ondelete="CASCADE"), primary_key=True),
    Column("remote_id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False, unique=True),
    Column("remote_index", BigInteger, nullable=False),  # the registry entry last followed
)

mirror_evidence = Table(
    "mirror_evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mirror_id", Integer, ForeignKey("mirrors.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),  # rewritten | rollback | ...
    Column("detail", Text, nullable=False),
    Column("held", Text, nullable=False),  # the checkpoint verified before
    Column("offered", Text, nullable=False),  # the signed checkpoint that contradicts it
)
