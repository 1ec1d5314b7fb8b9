"""Wake-ups between gateways sharing one PostgreSQL store: NOTIFY on commit, LISTEN per node.

Every logged write appends its entry through ``service.append_entries``, which also runs
``pg_notify`` on ``CHANNEL`` in the same transaction: PostgreSQL delivers a notification
only when (and if) the transaction commits, so a listener never wakes for a write that
was rolled back, and never misses one that committed while it listened. The payload is
the new log size (a hint only: the listener re-reads the store). A ledger that records a
signed checkpoint notifies the same channel, so nodes that wait for the signer wake too.

``Listener`` is the other side: one psycopg connection in autocommit mode on a daemon
thread, LISTENing and calling ``wake`` for each notification, reconnecting with a
growing pause when the database goes away. Polling stays the fallback: a node whose
listener is down still sees every change on its next poll. SQLite has no NOTIFY; a
SQLite store's gateways poll (they share one machine's file anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

CHANNEL = "clearwall_log"
RECONNECT_MAX = 10.0  # seconds between attempts while the database is away


def notify_commit(conn: Connection, size: int) -> None:
    """Queue a notification of log size ``size`` inside the caller's write transaction
    (delivered at commit; nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy import text

        conn.execute(
            text("SELECT pg_notify(:channel, :size)"), {"channel": CHANNEL, "size": str(size)}
        )


def libpq_url(store_url: str) -> str | None:
    """The libpq connection URI of a PostgreSQL store URL (SQLAlchemy's driver suffix
    dropped), or None for any other store. SQLAlchemy is imported only for such a URL:
    a SQLite gateway never loads it."""
    if not store_url.startswith("postgres"):
        return None
    from sqlalchemy.engine import make_url

    try:
        url = make_url(store_url)
    except Exception:  # an unparsable URL: opening the store says why
        return None
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """LISTEN on a PostgreSQL store's ``CHANNEL`` from a daemon thread and call ``wake``
    for every notification, and once after each (re)connection (a change may have
    committed while it was away)."""

    def __init__(self, conninfo: str, wake: Callable[[], None]) -> None:
        """Listen at ``conninfo`` (``libpq_url``); ``wake`` runs on the listener thread."""
        self.conninfo = conninfo
        self.wake = wake
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start listening on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="store-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        import psycopg

        pause = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    pause = 0.5
                    log.info("listening for policy changes on PostgreSQL (%s)", CHANNEL)
                    self.wake()
                    while not self._stop.is_set():
                        # A bounded wait, so a stop is seen within a second.
                        for _note in conn.notifies(timeout=1.0):
                            self.wake()
            except psycopg.Error as exc:
                if self.connected.is_set():
                    log.warning(
                        "policy change listener lost PostgreSQL (%s); polling meanwhile", exc
                    )
                self.connected.clear()
                self._stop.wait(pause)
                pause = min(pause * 2, RECONNECT_MAX)
        self.connected.clear()
