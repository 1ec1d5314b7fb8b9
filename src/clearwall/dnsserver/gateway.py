"""Assembles one data-plane process: policy holder, handler chain, listeners, metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clearwall.config import DNSConfig, HostPort, LoggingConfig
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers import build_paths, describe
from clearwall.dnsserver.handlers.base import Handler, Services, UpstreamTransport
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView
from clearwall.dnsserver.server import DNSServer, SocketTransport

if TYPE_CHECKING:
    from clearwall.querylog.recorder import Recorder

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """A built data plane; ``start``/``stop`` run its listeners."""

    config: DNSConfig
    policy: PolicyHolder
    metrics: DNSMetrics
    chain: Handler
    handlers: list[str]
    server: DNSServer
    transport: UpstreamTransport
    querylog: Recorder | None = None  # the query log's recorder, when it is on
    services: Services | None = None  # what the chain was built with (its encrypted upstreams)

    async def start(self, listen: tuple[HostPort, ...] | None = None) -> None:
        """Bind every listener (and start the query log's writer when it is on)."""
        await self.server.start(listen)
        if self.querylog is not None:
            self.querylog.start()
        log.info("DNS chain: %s", describe(self.handlers))
        for host, port in self.server.addresses:
            log.info("DNS listening on %s (UDP and TCP)", HostPort(host, port))
        log.info("DNS UDP: %s", self.server.udp_mode)
        names = {"dot": "DNS over TLS", "doh": "DNS over HTTPS", "doq": "DNS over QUIC"}
        for kind, bound in self.server.encrypted.items():
            for host, port in bound:
                log.info("%s listening on %s", names[kind], HostPort(host, port))
        if self.server.dispatcher.miss is not None and self.server.udp_mode.startswith("recvmmsg"):
            log.info("DNS misses: fused C path (fresh random port and ID per upstream query)")

    async def stop(self) -> None:
        """Stop listening, let in-flight queries finish, write the queued records, and
        close upstream connections."""
        await self.server.stop()
        if self.querylog is not None:
            self.querylog.stop()
        encrypted = self.services.encrypted if self.services is not None else None
        close = getattr(encrypted, "close", None)
        if close is not None:
            await close()

    async def resolve(
        self, query: bytes, client: str = "127.0.0.1", *, tcp: bool = False
    ) -> bytes | None:
        """Run raw query bytes through the chain as if ``client`` sent them; no sockets.

        Returns the reply bytes, or None when nothing would be sent (dropped).
        """
        from clearwall.dnsserver.server import early_reply

        q, early = early_reply(query, self.metrics)
        if q is None:
            return early
        ctx = Context(query, client, 0, tcp, q)
        result = self.chain(ctx)
        if not isinstance(result, Answer):
            await result
        return ctx.reply

    def swap(self, policy: PolicyView, equivalent: bool = False) -> None:
        """Enforce a new policy snapshot from the next query on (``equivalent``: it gives
        the same verdicts as the one it replaces, so cached answers stay valid)."""
        self.policy.swap(policy, equivalent)
        self.metrics.policy_version = policy.tree_size
        self.metrics.policy_swaps += 1


def build_gateway(
    config: DNSConfig,
    policy: PolicyView | None = None,
    *,
    transport: UpstreamTransport | None = None,
    metrics: DNSMetrics | None = None,
    reuse_port: bool = False,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    logging_config: LoggingConfig | None = None,
    writer: str = "w0",
) -> Gateway:
    """Build the chain and listeners for ``config`` (nothing is bound yet).

    ``clock`` measures durations (cache TTLs, rate limits) and ``wall`` gives the instant
    the policy's dates are compared with; a test passes its own to move time at will.
    With ``logging_config.query_log`` on, the chain records answers into the query log
    as ``writer`` (a name unique per DNS process); off, no query-log code is built.
    """
    holder = PolicyHolder() if policy is None else PolicyHolder(policy)
    metrics = metrics or DNSMetrics()
    metrics.policy_version = holder.current.tree_size
    transport = transport or SocketTransport()
    recorder = None
    if logging_config is not None and logging_config.query_log:
        from clearwall.querylog.recorder import Recorder

        recorder = Recorder(logging_config, metrics, writer)
    services = Services(
        config=config,
        policy=holder,
        metrics=metrics,
        transport=transport,
        clock=clock,
        wall=wall,
        querylog=recorder,
    )
    built = build_paths(services)
    server = DNSServer(
        config,
        built.entry,
        metrics,
        reuse_port=reuse_port,
        fast=built.fast,
        miss=built.miss,
        encrypted=services.listeners,
    )
    return Gateway(
        config,
        holder,
        metrics,
        built.entry,
        built.names,
        server,
        transport,
        querylog=recorder,
        services=services,
    )
