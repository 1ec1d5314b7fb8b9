"""The test helper: an HTTP JSON service that measures a target from its own vantage point.

In the spirit of OONI's web-connectivity test helper, it runs outside the network under
test. ``POST /measure`` with ``{"url": ..., "addresses": [...]}`` resolves the URL's name
with the helper's resolver, connects to its own addresses and to the ones the probe saw,
shakes hands and fetches the page, and answers with a ``ControlMeasurement``.
``GET /health`` answers ``{"ok": true}``. Requests are small, bounded in time and size,
only ``http``/``https`` URLs are measured, and unless ``allow_private`` is set, private,
loopback and reserved addresses are never connected to, so a public helper cannot be used
to reach into the network it runs in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from clearwall.errors import ProbeError
from clearwall.probe.dnsmeasure import DNSServer, literal, measure_dns
from clearwall.probe.inputs import parse_target
from clearwall.probe.netmeasure import make_ssl_context, measure_web
from clearwall.probe.records import ControlMeasurement

MAX_REQUEST = 16 * 1024
MAX_ADDRESSES = 4


@dataclass(frozen=True, slots=True)
class HelperSettings:
    """How the helper measures: its resolver, timeout per step, trust roots, concurrency."""

    resolver: DNSServer
    timeout: float = 5.0
    ca_file: str | None = None
    concurrency: int = 64
    allow_private: bool = False  # measure private/loopback/reserved addresses too


def _public(address: str) -> bool:
    """True for addresses a public helper may connect to on a stranger's behalf."""
    ip = ipaddress.ip_address(address)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
    )


async def control_measurement(
    url: str,
    probe_addresses: list[str],
    settings: HelperSettings,
    ssl_context: ssl.SSLContext | None,
) -> ControlMeasurement:
    """Measure ``url`` from here: DNS, TCP to our and the probe's addresses, TLS, HTTP."""
    target = parse_target(url)
    if target.is_ip:
        dns_result = literal(target.name)
    else:
        dns_result = await measure_dns(target.name, settings.resolver, timeout=settings.timeout)
    addresses: list[str] = []
    for address in [*dns_result.addresses, *probe_addresses]:
        if address not in addresses:
            addresses.append(address)
    own = [a for a in addresses if a in dns_result.addresses]
    ordered = own + [a for a in addresses if a not in own]
    if not settings.allow_private:
        # A helper must not become a way into the network it runs in (SSRF).
        refused = [a for a in ordered if not _public(a)]
        ordered = [a for a in ordered if _public(a)]
        if not ordered and (refused or target.is_ip):
            # Nothing left to measure: say so, rather than answer with empty steps that
            # a reader (or the classifier) could take for failed ones.
            shown = ", ".join(refused[:MAX_ADDRESSES]) or target.name
            return ControlMeasurement(
                dns_result,
                failure=f"helper_refused: non-public address {shown} (not measured)",
            )
    connects, tls, http = await measure_web(
        target, ordered[:MAX_ADDRESSES], timeout=settings.timeout, ssl_context=ssl_context
    )
    return ControlMeasurement(dns_result, connects, tls, http)


def _valid_addresses(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    result = []
    for item in value[:MAX_ADDRESSES]:
        try:
            result.append(str(ipaddress.ip_address(str(item))))
        except ValueError:
            continue
    return result


class HelperServer:
    """The helper's HTTP/1.1 server on asyncio streams (one request per connection)."""

    def __init__(self, settings: HelperSettings) -> None:
        """Prepare the server; nothing listens until ``start``."""
        self.settings = settings
        self._ssl = make_ssl_context(settings.ca_file)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` and return the bound address."""
        self._server = await asyncio.start_server(self._handle, host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            raise ProbeError("helper not started")
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await asyncio.wait_for(self._respond(reader), self.settings.timeout * 8)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            status, body = 400, {"error": "bad or slow request"}
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        head = (
            f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + payload)
            await writer.drain()
        except ConnectionError:
            pass  # the probe gave up; nothing to tell it
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_REQUEST:
            return 400, {"error": "request head too large"}
        lines = head.decode("iso-8859-1").split("\r\n")
        method, path, *_ = lines[0].split(" ")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if path == "/health":
            return 200, {"ok": True, "resolver": str(self.settings.resolver)}
        if path != "/measure":
            return 404, {"error": "unknown path"}
        if method != "POST":
            return 405, {"error": "use POST"}
        length = int(headers.get("content-length", "0"))
        if not 0 < length <= MAX_REQUEST:
            return 400, {"error": "body missing or too large"}
        request = json.loads(await reader.readexactly(length))
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            return 400, {"error": 'expected {"url": ..., "addresses": [...]}'}
        try:
            parse_target(request["url"])
        except ProbeError as exc:
            return 400, {"error": str(exc)}
        async with self._slots:
            result = await control_measurement(
                request["url"], _valid_addresses(request.get("addresses")), self.settings, self._ssl
            )
        return 200, result.to_json()


class HelperClient:
    """The probe's side of the test helper protocol."""

    def __init__(self, base_url: str, *, timeout: float, concurrency: int = 64) -> None:
        """Talk to the helper at ``base_url`` (e.g. ``http://198.18.3.2:8090``)."""
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency),
            trust_env=False,
        )

    async def check(self) -> None:
        """Raise ProbeError unless the helper answers its health check."""
        try:
            response = await self._client.get(self.base_url + "/health")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ProbeError(f"test helper {self.base_url} unreachable: {exc}") from exc

    async def measure(self, url: str, addresses: list[str]) -> ControlMeasurement:
        """Ask the helper to measure ``url``; a failure is recorded, never raised."""
        try:
            response = await self._client.post(
                self.base_url + "/measure", json={"url": url, "addresses": addresses}
            )
            response.raise_for_status()
            return ControlMeasurement.from_json(response.json())
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return ControlMeasurement(failure=f"helper_failure: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
