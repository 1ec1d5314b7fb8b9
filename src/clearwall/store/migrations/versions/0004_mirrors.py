"""The federation tables: the registries this installation mirrors, what it saw of them.

Revision ID: 0004_mirrors
Revises: 0003_requests
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from clearwall.store import schema

revision = "0004_mirrors"
down_revision = "0003_requests"
branch_labels = None
depends_on = None

# Parents before children; created from the schema's own tables so that they match it.
_TABLES = (
    schema.mirrors,
    schema.mirror_leaves,
    schema.mirror_authorities,
    schema.mirror_orders,
    schema.mirror_evidence,
)


def upgrade() -> None:
    """Create the mirror tables (empty: nothing is mirrored until ``mirror add``)."""
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)


def downgrade() -> None:
    """Drop the mirror tables (the adoptions stay on the log and in the orders)."""
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)
