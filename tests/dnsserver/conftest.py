"""Fixtures for the DNS gateway tests: a real nsd upstream and gateways on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clearwall.config import DNSConfig, HostPort, UpstreamConfig
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.policyholder import PolicyView, StaticPolicy
from clearwall.model import Action, AuthorityKind, Category, OrderRef
from dnsserver.upstreams import NSD, Unbound, nsd_available, unbound_available


@pytest.fixture(scope="session")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NSD]:
    """A real nsd serving example.test for the whole session."""
    if not nsd_available():
        pytest.fail("nsd is not installed: run scripts/install-system-deps.sh as root")
    server = NSD(tmp_path_factory.mktemp("nsd"))
    server.start()
    yield server
    server.stop()


def order(
    oid: int = 1,
    *,
    jurisdiction: str = "*",
    kind: AuthorityKind = AuthorityKind.COURT,
    category: Category = Category.COURT_ORDER,
    action: Action = Action.NXDOMAIN,
    contacts: tuple[str, ...] = ("mailto:appeals@court.example",),
) -> OrderRef:
    """An order reference for tests."""
    return OrderRef(
        id=oid,
        jurisdiction=jurisdiction,
        authority="Test Court",
        authority_kind=kind,
        category=category,
        action=action,
        title=f"Order {oid}",
        legal_basis="Test Act s.1",
        reference=f"T-{oid}",
        contacts=contacts,
    )


def dns_config(upstream_port: int, **changes: Any) -> DNSConfig:
    """A DNSConfig on an ephemeral loopback port forwarding to 127.0.0.1:upstream_port."""
    base = DNSConfig(
        listen=(HostPort("127.0.0.1", 0),),
        upstream=UpstreamConfig(
            servers=(HostPort("127.0.0.1", upstream_port),), timeout=0.5, attempts=1
        ),
    )
    return dataclasses.replace(base, **changes)


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """Start gateways in the test's event loop; all are stopped at the end."""
    started: list[Gateway] = []

    async def start(
        config: DNSConfig,
        policy: PolicyView | None = None,
        listen: tuple[HostPort, ...] | None = None,
        **build: Any,
    ) -> Gateway:
        gw = build_gateway(config, policy or StaticPolicy(), **build)
        await gw.start(listen)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        await gw.stop()


class FakeTime:
    """Both clocks of a gateway (``build_gateway(clock=…, wall=…)``), moved together by
    ``advance``: a test of what happens at an hour sets the hour, it does not wait."""

    def __init__(self, epoch: float = 3_000_000_000.0) -> None:  # in 2065: not the real now
        self.elapsed = 1000.0
        self.epoch = epoch

    def monotonic(self) -> float:
        """Seconds on the gateway's duration clock."""
        return self.elapsed

    def wall(self) -> float:
        """The gateway's current instant (epoch seconds)."""
        return self.epoch

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.elapsed += seconds
        self.epoch += seconds

    def clocks(self) -> dict[str, Callable[[], float]]:
        """The keyword arguments of ``build_gateway``."""
        return {"clock": self.monotonic, "wall": self.wall}


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """Alias of tmp_path."""
    return tmp_path


@pytest.fixture(scope="session")
def unbound(nsd: NSD, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unbound]:
    """A real validating Unbound forwarding to the session's nsd (see ``Unbound``)."""
    if not unbound_available():
        pytest.fail("unbound is not installed: run scripts/install-system-deps.sh as root")
    server = Unbound(tmp_path_factory.mktemp("unbound"), nsd.port, nsd.trust_anchor)
    server.start()
    yield server
    server.stop()
