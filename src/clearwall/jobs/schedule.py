"""When each job is due: the one schedule, run in process (``runner.run_forever``) or kept
by a thread of the gateway that starts a short-lived run for each batch (``process``).

This module imports only the standard library and the config, so the gateway keeping
the jobs' time holds no database layer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from clearwall.config import Config

UPKEEP_INTERVAL = 60.0  # seconds between runs of the upkeep jobs (expire, refresh)
UPKEEP = ("expire", "refresh")


def run_schedule(
    config: Config,
    run: Callable[[Sequence[str]], None],
    stop: threading.Event,
    upkeep_every: float = UPKEEP_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call ``run`` with the jobs due, in the order they run: the upkeep jobs at once and
    every ``upkeep_every`` seconds, the witness job every ``[ledger] witness_retry``
    seconds (the first after that long) when witnesses are configured, the mirrors every
    ``[federation] interval`` from the start, until ``stop`` is set."""
    witness_every = config.ledger.witness_retry if config.ledger.witnesses else None
    mirror_every = config.federation.interval
    next_upkeep = clock()
    # Every sync asks the witnesses itself: a retry is for the late ones, after a while.
    next_witness = next_upkeep + (witness_every or 0.0)
    next_mirror = next_upkeep  # a registry's orders are adopted from the start
    while not stop.is_set():
        now = clock()
        due: list[str] = []
        if now >= next_upkeep:
            due += UPKEEP
            next_upkeep = now + upkeep_every
        if witness_every is not None and now >= next_witness:
            due.append("witnesses")
            next_witness = now + witness_every
        mirrors = now >= next_mirror
        if mirrors:
            due.append("mirrors")
        if due:
            run(due)
        if mirrors:
            # From the batch's start, as the upkeep's: with equal intervals (60 s each by
            # default) both stay one batch, so one run; from its end when a sync took
            # longer than its interval, so syncs never run back to back.
            ended = clock()
            next_mirror = now + mirror_every
            if ended >= next_mirror:
                next_mirror = ended + mirror_every
        wake = min(next_upkeep, next_mirror)
        if witness_every is not None:
            wake = min(wake, next_witness)
        stop.wait(max(0.0, wake - clock()))
