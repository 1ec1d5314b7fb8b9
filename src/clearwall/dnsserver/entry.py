"""The gateway's lean process entry: ``python -m clearwall.dnsserver.entry '<json>'``.

``clearwall serve`` parses its flags and the config with the full CLI, then, when no web
app runs beside DNS, replaces itself (``exec``, same pid) with this module, so the DNS
processes never hold the CLI's imports (typer, rich, the web stack, SQLAlchemy): about
30 MiB less per gateway. The JSON argument is what ``serve`` decided (``launch_args``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.config import HostPort, load_config
from clearwall.errors import ClearwallError

if TYPE_CHECKING:  # imported by main() only when the gateway runs
    from clearwall.dnsserver.options import ServeOptions

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def launch_args(opts: ServeOptions, log_level: str) -> list[str]:
    """The argv that runs this entry with what ``serve`` decided (``opts`` without a web
    app: the config object itself is rebuilt from its path and overrides)."""
    listen = opts.metrics_listen
    spec = {
        "config_path": str(opts.config_path) if opts.config_path else None,
        "overrides": opts.overrides,
        "store_url": opts.store_url,
        "snapshot": str(opts.snapshot) if opts.snapshot else None,
        "snapshot_dir": str(opts.snapshot_dir) if opts.snapshot_dir else None,
        "metrics_listen": str(listen) if listen else None,
        "log_level": log_level,
    }
    return [sys.executable, "-m", "clearwall.dnsserver.entry", json.dumps(spec)]


def main(argv: list[str] | None = None) -> int:
    """Run the gateway; a clearwall error is one line on stderr and exit status 1."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    logging.basicConfig(level=spec["log_level"], format=LOG_FORMAT)
    try:
        config_path = Path(spec["config_path"]) if spec["config_path"] else None
        config = load_config(config_path, spec["overrides"])
        check = None
        if spec["store_url"] and not spec["snapshot"]:
            # The published checkpoint is verified in a child (no signing key, no
            # ``cryptography`` here), started now so that it runs while the imports
            # below do.
            from clearwall.control.policy_source import HeadCheck

            check = HeadCheck.start(spec["store_url"], config.ledger)
        from clearwall.dnsserver.options import ServeOptions
        from clearwall.dnsserver.workers import serve

        listen = spec["metrics_listen"]
        serve(
            ServeOptions(
                config=config,
                config_path=config_path,
                overrides=spec["overrides"],
                store_url=spec["store_url"],
                snapshot=Path(spec["snapshot"]) if spec["snapshot"] else None,
                snapshot_dir=Path(spec["snapshot_dir"]) if spec["snapshot_dir"] else None,
                metrics_listen=HostPort.parse(listen, 0) if listen else None,
                head_check=check,
            )
        )
    except ClearwallError as exc:
        print(f"clearwall: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
