"""Cross-border requests between jurisdictions (issue 20 section 2): the ``requests`` table.

Revision ID: 0003_requests
Revises: 0002_log_jurisdictions
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clearwall.store.schema import UTCDateTime

revision = "0003_requests"
down_revision = "0002_log_jurisdictions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the ``requests`` table and its indexes."""
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("authority_id", sa.Integer(), nullable=False),
        sa.Column("from_jurisdiction", sa.String(32), nullable=False),
        sa.Column("to_jurisdiction", sa.String(32), nullable=False),
        sa.Column("ask", sa.String(16), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(300), nullable=False),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("rule_count", sa.Integer(), nullable=False),
        sa.Column("rules_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("filed_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("filed_log_index", sa.BigInteger(), nullable=True),
        sa.Column("decided_log_index", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["authority_id"], ["authorities.id"], name="fk_requests_authority_id_authorities"
        ),
        sa.ForeignKeyConstraint(
            ["to_jurisdiction"],
            ["jurisdictions.code"],
            name="fk_requests_to_jurisdiction_jurisdictions",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["authorities.id"], name="fk_requests_decided_by_authorities"
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_requests_order_id_orders"),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
    )
    op.create_index("ix_requests_to_jurisdiction", "requests", ["to_jurisdiction"])
    op.create_index("ix_requests_from_jurisdiction", "requests", ["from_jurisdiction"])
    op.create_index("ix_requests_order_id", "requests", ["order_id"])


def downgrade() -> None:
    """Drop the ``requests`` table (its log entries stay on the log)."""
    op.drop_table("requests")
