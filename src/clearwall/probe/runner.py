"""The probe run: measure every target with bounded concurrency and a deadline per target.

Every network step has its own timeout, and each target as a whole has a deadline, so a
hung site, resolver or helper costs at most that deadline and never stalls the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from clearwall.probe.classify import (
    DEADLINE_EXCEEDED,
    INTERNAL_ERROR,
    Classification,
    classify,
)
from clearwall.probe.dnsmeasure import DNSMeasurement, DNSServer, literal, measure_dns
from clearwall.probe.helper import HelperClient
from clearwall.probe.inputs import Target
from clearwall.probe.netmeasure import make_ssl_context, measure_web
from clearwall.probe.reconcile import (
    DEFAULT_PROPAGATION_DELAY,
    NameProof,
    Reconciliation,
    claimed_orders,
    reconcile,
)
from clearwall.probe.records import ControlMeasurement, TargetMeasurement

DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 5.0
MAX_ADDRESSES = 2


class ProofSource(Protocol):
    """Where per-name proofs come from (the log client, or a twin in tests)."""

    async def prove(self, name: str) -> NameProof:
        """The verified proof for ``name`` in the auditor's jurisdiction; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    """How a run measures: the resolvers, the helper, trust roots, timeouts, concurrency."""

    resolver: DNSServer
    control: DNSServer | None = None
    helper_url: str | None = None
    jurisdiction: str = ""
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    ca_file: str | None = None
    propagation_delay: dt.timedelta = DEFAULT_PROPAGATION_DELAY

    @property
    def target_deadline(self) -> float:
        """The most one target may take: DNS, then connect, TLS and HTTP, then slack."""
        return self.timeout * 6 + 2


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One target's measurements, classification and reconciliation."""

    measurement: TargetMeasurement
    classification: Classification
    reconciliation: Reconciliation
    proof: NameProof | None = None


async def measure_target(
    target: Target,
    settings: ProbeSettings,
    helper: HelperClient | None,
    ssl_context: object,
) -> TargetMeasurement:
    """Measure one target from this network and from the controls (never raises)."""
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    control_task: Awaitable[DNSMeasurement | None]
    if target.is_ip:
        probe_dns, control_dns = literal(target.name), None
    elif settings.control is not None:
        control_task = measure_dns(target.name, settings.control, timeout=settings.timeout)
    else:
        control_task = _none()
    if not target.is_ip:
        probe_dns, control_dns = await asyncio.gather(
            measure_dns(target.name, settings.resolver, timeout=settings.timeout), control_task
        )
    addresses = list(dict.fromkeys(probe_dns.addresses))[:MAX_ADDRESSES]
    helper_task: Awaitable[ControlMeasurement | None] = (
        helper.measure(target.url, addresses) if helper is not None else _none()
    )
    web_task = measure_web(
        target,
        addresses,
        timeout=settings.timeout,
        ssl_context=ssl_context,  # type: ignore[arg-type]
    )
    (connects, tls, http), control = await asyncio.gather(web_task, helper_task)
    return TargetMeasurement(
        target=target,
        start_time=started,
        dns=probe_dns,
        control_dns=control_dns,
        tcp_connect=connects,
        tls_handshake=tls,
        http_request=http,
        control=control,
        runtime=time.monotonic() - clock,
    )


async def _none() -> None:
    return None


def judge(
    measurement: TargetMeasurement, proof: NameProof | None, settings: ProbeSettings
) -> ProbeResult:
    """Classify and reconcile one measurement (pure)."""
    classification = classify(measurement)
    claims = claimed_orders(classification, measurement.dns.sde)
    reconciliation = reconcile(
        classification,
        proof,
        at=measurement.start_time,
        delay=settings.propagation_delay,
        claims=claims,
    )
    return ProbeResult(measurement, classification, reconciliation, proof)


def unfinished(
    target: Target, settings: ProbeSettings, started: dt.datetime, failure: str, note: str
) -> TargetMeasurement:
    """The record of a target whose measurement did not finish (deadline or error)."""
    dns = DNSMeasurement(str(settings.resolver), target.name, failure=failure)
    elapsed = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return TargetMeasurement(target, started, dns, runtime=elapsed, notes=(note,))


async def run_probe(
    targets: Sequence[Target],
    settings: ProbeSettings,
    *,
    proofs: ProofSource | None = None,
    on_result: Callable[[ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Probe every target, at most ``settings.concurrency`` at a time, in input order."""
    helper = (
        HelperClient(
            settings.helper_url, timeout=settings.timeout * 5, concurrency=settings.concurrency
        )
        if settings.helper_url
        else None
    )
    ssl_context = make_ssl_context(settings.ca_file)
    slots = asyncio.Semaphore(settings.concurrency)
    proof_cache: dict[str, asyncio.Task[NameProof]] = {}

    async def proof_for(name: str, is_ip: bool) -> NameProof | None:
        """One proof request per name, shared by every target with that name."""
        if proofs is None:
            return None
        if is_ip:
            return NameProof(
                name, settings.jurisdiction, False, failure="IP-literal URL: no name to prove"
            )
        if name not in proof_cache:
            proof_cache[name] = asyncio.ensure_future(proofs.prove(name))
        return await proof_cache[name]

    async def one(target: Target) -> ProbeResult:
        """Measure, prove, classify and reconcile one target inside a concurrency slot."""
        async with slots:
            started = dt.datetime.now(dt.UTC)
            proof_task = asyncio.ensure_future(proof_for(target.name, target.is_ip))
            try:
                measurement = await asyncio.wait_for(
                    measure_target(target, settings, helper, ssl_context), settings.target_deadline
                )
            except TimeoutError:
                measurement = unfinished(
                    target, settings, started, DEADLINE_EXCEEDED,
                    f"target exceeded its {settings.target_deadline:.0f} s deadline",
                )  # fmt: skip
            except Exception as exc:  # a bug must cost one target, not the run
                measurement = unfinished(
                    target, settings, started, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
                )
            try:
                proof = await asyncio.wait_for(proof_task, settings.target_deadline)
            except TimeoutError:
                proof = NameProof(
                    target.name, settings.jurisdiction, False, failure="log timed out"
                )
        result = judge(measurement, proof, settings)
        if on_result is not None:
            on_result(result)
        return result

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        if helper is not None:
            await helper.aclose()
