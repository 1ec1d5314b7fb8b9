"""What every route needs, built once per app: store, writes, reads, snapshot, guards."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry, Counter

from clearwall.config import Config
from clearwall.ledger.log import TransparencyLog
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.store.db import Store
from clearwall.store.loader import build_snapshot
from clearwall.store.reader import PolicyReader
from clearwall.store.service import PolicyService
from clearwall.store.tokens import TokenStore
from clearwall.web.queries import StatsCache
from clearwall.web.security import CSRFProtector, SubmissionLimiter

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

SnapshotProvider = Callable[[], PolicySnapshot]


def compile_from_store(store: Store, base_url: str) -> PolicySnapshot:
    """Compile a snapshot of the store's enforceable orders (standalone mode).

    The same loader as the gateway: only orders on the log whose stored rules match
    their logged digest, so the portal never shows a rule the gateway would not enforce.
    """
    return build_snapshot(store, base_url)


@dataclass
class StoreSnapshots:
    """A snapshot provider that recompiles from the store whenever the log has grown."""

    store: Store
    base_url: str
    _size: int = -1
    _snapshot: PolicySnapshot | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> PolicySnapshot:
        """The snapshot for the current log size (one cheap read per call)."""
        size = self.store.log_size()
        with self._lock:
            if self._snapshot is None or size != self._size:
                self._snapshot = compile_from_store(self.store, self.base_url)
                self._size = size
            return self._snapshot


@dataclass
class WebContext:
    """The app's dependencies, injected through ``app.state.ctx`` (no module globals)."""

    config: Config
    store: Store
    service: PolicyService
    reader: PolicyReader
    tokens: TokenStore
    snapshot: SnapshotProvider
    registry: CollectorRegistry
    scope_denied: Counter
    templates: Jinja2Templates
    csrf: CSRFProtector
    appeal_limiter: SubmissionLimiter
    stats: StatsCache
    tlog: TransparencyLog
    gateway_metrics: bool = False  # True when the registry holds the gateway's counters

    @property
    def base_url(self) -> str:
        """The public base URL of the portal, without a trailing slash."""
        return self.config.dns.block.public_url.rstrip("/")

    @property
    def portal_hosts(self) -> frozenset[str]:
        """Host names that always mean the portal itself, never a block page."""
        host = (urlsplit(self.base_url).hostname or "").lower()
        return frozenset({host, "localhost", "testserver", ""})


def get_ctx(request: Request) -> WebContext:
    """The app's context, as a FastAPI dependency."""
    ctx: WebContext = request.app.state.ctx
    return ctx
