"""The policy store: schema, migrations, the one write path and the snapshot loader.

``Store`` opens a database (SQLite file or PostgreSQL) and runs its migrations;
``PolicyService`` is the only code that writes policy, each write committed together with
its transparency-log entry; ``load_policy``/``build_snapshot`` read back only what the log
has published.
"""

from __future__ import annotations

from clearwall.store.db import Store, open_store
from clearwall.store.records import Appeal, AppealStatus, Subscription
from clearwall.store.service import PolicyService

__all__ = [
    "Appeal",
    "AppealStatus",
    "PolicyService",
    "Store",
    "Subscription",
    "open_store",
]
