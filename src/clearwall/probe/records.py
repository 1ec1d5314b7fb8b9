"""The per-target measurement record: what the probe saw and what the control vantage saw."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clearwall.probe.dnsmeasure import DNSMeasurement
from clearwall.probe.inputs import Target
from clearwall.probe.netmeasure import HTTPResponse, TCPConnect, TLSHandshake


@dataclass(frozen=True, slots=True)
class ControlMeasurement:
    """The test helper's measurements of one target from its own vantage point.

    ``failure`` is set when the helper could not be asked at all (then every other field
    is empty and the classifier treats the control as missing).
    """

    dns: DNSMeasurement | None = None
    tcp_connect: tuple[TCPConnect, ...] = ()
    tls_handshake: TLSHandshake | None = None
    http_request: HTTPResponse | None = None
    failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (the helper's response body)."""
        return {
            "dns": self.dns.to_json() if self.dns else None,
            "tcp_connect": [c.to_json() for c in self.tcp_connect],
            "tls_handshake": self.tls_handshake.to_json() if self.tls_handshake else None,
            "http_request": self.http_request.to_json() if self.http_request else None,
            "failure": self.failure,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControlMeasurement:
        """Rebuild from ``to_json`` output."""
        return cls(
            dns=DNSMeasurement.from_json(data["dns"]) if data.get("dns") else None,
            tcp_connect=tuple(TCPConnect.from_json(c) for c in data.get("tcp_connect") or ()),
            tls_handshake=(
                TLSHandshake.from_json(data["tls_handshake"]) if data.get("tls_handshake") else None
            ),
            http_request=(
                HTTPResponse.from_json(data["http_request"]) if data.get("http_request") else None
            ),
            failure=data.get("failure"),
        )

    @property
    def usable(self) -> bool:
        """True when the helper answered (its measurements may still show failures)."""
        return self.failure is None


@dataclass(frozen=True, slots=True)
class TargetMeasurement:
    """Everything measured for one target, from the network under test and the controls."""

    target: Target
    start_time: dt.datetime
    dns: DNSMeasurement
    control_dns: DNSMeasurement | None = None
    tcp_connect: tuple[TCPConnect, ...] = ()
    tls_handshake: TLSHandshake | None = None
    http_request: HTTPResponse | None = None
    control: ControlMeasurement | None = None
    runtime: float = 0.0
    notes: tuple[str, ...] = field(default=())
