"""The jobs and their schedule: run once (``clearwall jobs run``) or until stopped (``serve``)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from clearwall.config import Config
from clearwall.jobs.schedule import UPKEEP_INTERVAL, run_schedule
from clearwall.ledger import witnessing
from clearwall.ledger.log import TransparencyLog
from clearwall.store.db import Store
from clearwall.store.service import PolicyService

log = logging.getLogger("clearwall.jobs")


@dataclass
class Jobs:
    """What the jobs work on: one store, the write path publishing to its log, the config."""

    config: Config
    service: PolicyService
    tlog: TransparencyLog

    @classmethod
    def open(cls, config: Config, store_url: str) -> Jobs:
        """The jobs of the store at ``store_url`` and its own ledger (``clearwall.layout``);
        each write is published (tiles, checkpoint) at once."""
        from clearwall.layout import resolve_ledger

        store = Store(store_url)
        store.require_initialized()
        config = dataclasses.replace(config, ledger=resolve_ledger(config.ledger, store_url))
        tlog = TransparencyLog(store, config.ledger)

        def publish() -> None:
            tlog.sync()

        return cls(config, PolicyService(store, after_commit=publish), tlog)


def expire(jobs: Jobs) -> str:
    """Mark the orders past their sunset expired, each with its ``order-expired`` entry."""
    ids = jobs.service.expire_due()
    return f"expired {len(ids)} order(s)" + (f": {', '.join(map(str, ids))}" if ids else "")


def refresh(jobs: Jobs) -> str:
    """Refresh the subscriptions that are due, from public addresses only unless
    ``[web] subscriptions_fetch_internal``."""
    from clearwall.jobs.subscriptions import refresh_due

    public_only = not jobs.config.web.subscriptions_fetch_internal
    ids = refresh_due(jobs.service, public_only)
    return f"refreshed {len(ids)} subscription(s)" + (
        f": {', '.join(map(str, ids))}" if ids else ""
    )


def witnesses(jobs: Jobs) -> str:
    """Ask the witnesses missing from the published checkpoint again."""
    if not jobs.config.ledger.witnesses:
        return "no witnesses configured"
    if not jobs.tlog.signs:
        # Its checkpoint is the signer's note from the database, byte for byte: copy the
        # cosignatures the signer's retries attached there.
        jobs.tlog.sync()
        return "this node holds no ledger key: the signer asks the witnesses"
    added = witnessing.retry(jobs.tlog)
    return f"{added} late cosignature(s) attached"


def mirrors(jobs: Jobs) -> str:
    """Sync every mirrored registry once (``clearwall.federation.sync``): verify its new
    checkpoint and entries, adopt and withdraw its orders. A registry that cannot be
    followed is reported (and recorded on the mirror); the others still sync."""
    from sqlalchemy import inspect

    from clearwall.federation.sync import sync_all

    if not inspect(jobs.service.store.engine).has_table("mirrors"):
        return "no mirrors (the store predates them: `clearwall init` upgrades it)"
    results = sync_all(jobs.service)
    if not results:
        return "no mirrors"
    lines = [r.line() if not isinstance(r, Exception) else f"{r.status}: {r}" for r in results]
    if any(isinstance(r, Exception) for r in results):
        return "FAILED: " + "; ".join(lines)
    changes = sum(r.adopted + r.withdrawn for r in results if not isinstance(r, Exception))
    return f"{changes} change(s): " + "; ".join(lines)


JOBS: dict[str, Callable[[Jobs], str]] = {
    "expire": expire,
    "refresh": refresh,
    "witnesses": witnesses,
    "mirrors": mirrors,
}
"""Every job by name, in the order ``all`` runs them."""


def run_once(jobs: Jobs, names: Iterable[str]) -> list[tuple[str, str]]:
    """Run the named jobs in turn; (name, what it did) for each. A job's ClearwallError
    propagates (``clearwall jobs run`` reports it)."""
    return [(name, JOBS[name](jobs)) for name in names]


def run_logged(jobs: Jobs, name: str) -> None:
    """Run one job, logging what it did (or why it failed: the schedule goes on)."""
    try:
        done = JOBS[name](jobs)
    except Exception as exc:  # a bad database moment or a dead witness must not stop jobs
        log.warning("job %s failed: %s", name, exc)
        return
    log.debug("job %s: %s", name, done)
    if not done.startswith(("expired 0 ", "refreshed 0 ", "0 ", "no ")):
        log.info("job %s: %s", name, done)


def run_forever(
    jobs: Jobs,
    stop: threading.Event,
    upkeep_every: float = UPKEEP_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run the jobs in this process on their schedule (``schedule.run_schedule``) until
    ``stop`` is set; a failing job is logged and the others run."""

    def run(names: Sequence[str]) -> None:
        for name in names:
            run_logged(jobs, name)

    run_schedule(jobs.config, run, stop, upkeep_every, clock)
