"""Run the ``clearwall`` command and SIGKILL it at one step of the log's write path.

    python crashpoint.py STEP clearwall-args...

The kill is this very process sending itself SIGKILL at the named step: nothing after it
runs (no ``finally``, no atexit), exactly as an external ``kill -9`` landing there. The
steps are reached by wrapping the product's own functions here, in the test tree, so the
product carries no fault hook. Steps, in the order a write publishes:

- ``after-commit``: the store committed the entry; the ledger sync has not started;
- ``mid-bundles``: the first entry bundle is written, no hash tile yet;
- ``torn-tile``: a hash tile's temporary file is half written, not renamed into place;
- ``mid-rules``: tiles are complete, the order's rule file is not written;
- ``mid-checkpoint``: the new checkpoint's temporary file is half written;
- ``before-record``: the checkpoint is published; the store has not recorded it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

STEPS = (
    "after-commit",
    "mid-bundles",
    "torn-tile",
    "mid-rules",
    "mid-checkpoint",
    "before-record",
)


def die() -> None:
    """SIGKILL this process now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _half_written(path: Path, data: bytes, tmp_dir: Path) -> None:
    """What a kill in the middle of ``_write_atomic`` leaves: a torn temporary file."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    (tmp_dir / f"{path.name}.{os.getpid()}.tmp").write_bytes(data[: max(1, len(data) // 2)])
    die()


def install(step: str) -> None:
    """Wrap the function at which ``step`` kills."""
    from clearwall.ledger import log, tiledir
    from clearwall.store.db import Store

    if step == "after-commit":

        def sync(self: Any) -> Any:
            die()

        log.TransparencyLog.sync = sync  # type: ignore[method-assign]
        return
    if step == "before-record":

        def add_checkpoint(self: Any, *args: Any) -> None:
            die()

        Store.add_checkpoint = add_checkpoint  # type: ignore[method-assign]
        return
    write_atomic = tiledir._write_atomic

    def wrapped(path: Path, data: bytes, *rest: Path) -> None:
        tmp_dir = rest[0] if rest else path.parent  # (older builds wrote temps beside)
        parts = path.parts
        if step == "torn-tile" and "tile" in parts and "entries" not in parts:
            _half_written(path, data, tmp_dir)
        if step == "mid-rules" and "rules" in parts:
            die()
        if step == "mid-checkpoint" and path.name == "checkpoint":
            _half_written(path, data, tmp_dir)
        write_atomic(path, data, *rest)
        if step == "mid-bundles" and "entries" in parts:
            die()  # one entry bundle is published, no hash tile yet

    tiledir._write_atomic = wrapped


def main() -> None:
    """``crashpoint.py STEP ARGS...``: run ``clearwall ARGS...`` with the kill installed."""
    step, *args = sys.argv[1:]
    if step not in STEPS:
        raise SystemExit(f"unknown step {step!r}: one of {', '.join(STEPS)}")
    install(step)
    from clearwall.cli.main import main as clearwall

    sys.argv = ["clearwall", *args]
    clearwall()


if __name__ == "__main__":
    main()
