"""What ``clearwall serve`` decided beyond the config file, on its own: the CLI builds it
before it replaces itself with the gateway's entry, and importing the gateway just for
this type cost a start 0.06 s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.config import Config, HostPort

if TYPE_CHECKING:
    from clearwall.control.policy_source import HeadCheck
    from clearwall.dnsserver.metrics import DNSCollector
    from clearwall.dnsserver.policyholder import PolicyView


@dataclass
class ServeOptions:
    """What ``clearwall serve`` decided beyond the config file."""

    config: Config
    config_path: Path | None = None
    overrides: dict[str, object] = field(default_factory=dict)
    store_url: str | None = None  # compile and hot-swap from this store
    snapshot: Path | None = None  # or serve this compiled snapshot as is
    snapshot_dir: Path | None = None  # None: the store's default (``clearwall.layout``)
    metrics_listen: HostPort | None = None
    # The published checkpoint's check, started before the gateway's own imports
    # (``dnsserver.entry``); None: the start starts its own.
    head_check: HeadCheck | None = None
    # Starts the web app beside DNS (given the metrics collector and a function returning
    # the policy in force); None = serve only /metrics on ``metrics_listen``.
    web_app: Callable[[DNSCollector, Callable[[], PolicyView]], None] | None = None
