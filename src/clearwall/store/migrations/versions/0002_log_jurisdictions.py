"""Put every jurisdiction that is not yet on the log there (a data revision).

Jurisdictions were written without a log entry before ``jurisdiction-set`` existed; the
loader now enforces only the networks the log commits, so a store from before would
lose its jurisdictions' clients. This revision appends one ``jurisdiction-set`` entry per
such jurisdiction, as stored, in code order. Fresh stores have none: it writes nothing.

Revision ID: 0002_log_jurisdictions
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clearwall.ledger import entries
from clearwall.ledger.entries import JurisdictionSet
from clearwall.ledger.logstate import fold
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import utcnow
from clearwall.store.service import append_entries

revision = "0002_log_jurisdictions"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Append a ``jurisdiction-set`` entry for each stored jurisdiction the log lacks."""
    conn = op.get_bind()
    t = schema.log_entries
    rows = conn.execute(sa.select(t.c.idx, t.c.data).order_by(t.c.idx))
    logged = fold((int(i), bytes(d)) for i, d in rows).jurisdictions
    missing = [j for j in repo.list_jurisdictions(conn) if j.code not in logged]
    if missing:
        now = utcnow()
        append_entries(conn, [entries.encode(JurisdictionSet(now, j)) for j in missing], now)


def downgrade() -> None:
    """Nothing: the log is append-only, and the entries stay true of the store."""
