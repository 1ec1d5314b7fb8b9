"""The primary's own process, ``python -m clearwall.xfr.entry '<json>'``, started by ``serve``.

It runs beside the DNS gateway, not inside it: computing the zones of a large policy
takes seconds of CPU, which must not stall the gateway's event loop. The JSON argument
names the config file, the overrides and the store. The process stops on SIGTERM or
SIGINT, and when its standard input reaches end of file: ``serve`` keeps the other
end open for as long as it lives, so the primary never outlives the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from clearwall.errors import ClearwallError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def launch_args(
    config_path: Path | None,
    overrides: dict[str, Any],
    store_url: str,
    log_level: str,
    watch_stdin: bool = True,
) -> list[str]:
    """The argv that runs the primary for these settings."""
    spec = {
        "config_path": str(config_path) if config_path else None,
        "overrides": overrides,
        "store_url": store_url,
        "log_level": log_level,
        "watch_stdin": watch_stdin,
    }
    return [sys.executable, "-m", "clearwall.xfr.entry", json.dumps(spec)]


async def _serve(spec: dict[str, Any]) -> None:
    from clearwall.config import load_config
    from clearwall.store.db import open_store
    from clearwall.xfr.primary import Primary

    config_path = Path(spec["config_path"]) if spec["config_path"] else None
    # The store's own ledger (the primary publishes before it serves) and TSIG keys are
    # found by the Primary from the store (``clearwall.layout``).
    config = load_config(config_path, spec["overrides"])
    store = open_store(spec["store_url"])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if spec.get("watch_stdin"):
        # The parent holds our stdin's other end: end of file means it is gone.
        def on_input() -> None:
            """Stop at end of file on stdin (anything else read is ignored)."""
            if not os.read(sys.stdin.fileno(), 4096):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()

        loop.add_reader(sys.stdin.fileno(), on_input)
    try:
        await Primary(config, store).run(stop)
    finally:
        store.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Run the primary; a clearwall error is one line on stderr and exit status 1."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    logging.basicConfig(level=spec["log_level"], format=LOG_FORMAT)
    try:
        asyncio.run(_serve(spec))
    except ClearwallError as exc:
        print(f"clearwall: error: {exc}", file=sys.stderr)
        return 1
    logging.getLogger(__name__).info("xfr: primary stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
