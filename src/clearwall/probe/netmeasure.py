"""TCP, TLS and HTTP measurements towards one address, each bounded by a timeout.

The HTTP client here is deliberately tiny: it connects to the address the DNS step
resolved (never re-resolving), sends one ``GET`` with the target's Host and SNI, and
reads at most ``max_body`` bytes, so a hostile or hung server cannot stall the probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clearwall.probe.inputs import Target

USER_AGENT = "clearwall-probe/0.1 (+https://clearwall.example/probe)"
MAX_BODY = 1 << 20

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_LINK_BLOCKED_BY = re.compile(r'<([^>]*)>\s*;[^,]*rel\s*=\s*"?blocked-by"?', re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BlockpageFingerprint:
    """A known blockpage: which part of a response to look at and the pattern to find."""

    name: str
    where: str  # "title", "body" or "location"
    pattern: re.Pattern[str]


# Generic wording of national and operator blockpages, plus a few well-known ones that
# OONI's fingerprint lists also carry (checked by substring, case-insensitively).
FINGERPRINTS: tuple[BlockpageFingerprint, ...] = (
    BlockpageFingerprint(
        "generic-title",
        "title",
        re.compile(
            r"(access|this site|this page|website)\b.{0,30}\b(blocked|restricted|denied)", re.I
        ),
    ),
    BlockpageFingerprint(
        "generic-body",
        "body",
        re.compile(
            r"(this|the) (web ?site|site|page|resource) (has been|is) (blocked|restricted)", re.I
        ),
    ),
    BlockpageFingerprint("ru-rostelecom", "location", re.compile(r"warning\.rt\.ru", re.I)),
    BlockpageFingerprint("ir-iframe", "body", re.compile(r"10\.10\.34\.3[456]", re.I)),
    BlockpageFingerprint(
        "http-451-page", "body", re.compile(r"unavailable for legal reasons", re.I)
    ),
)


@dataclass(frozen=True, slots=True)
class TCPConnect:
    """One TCP connect attempt (OONI ``tcp_connect`` entry)."""

    ip: str
    port: int
    success: bool
    failure: str | None = None
    t: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form with OONI's nesting (``status.success``/``status.failure``)."""
        return {
            "ip": self.ip,
            "port": self.port,
            "status": {"success": self.success, "failure": self.failure},
            "t": round(self.t, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TCPConnect:
        """Rebuild from ``to_json`` output."""
        status = data.get("status") or {}
        return cls(
            str(data.get("ip", "")),
            int(data.get("port", 0)),
            bool(status.get("success")),
            status.get("failure"),
            float(data.get("t") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class TLSHandshake:
    """One TLS handshake with SNI (OONI ``tls_handshakes`` entry)."""

    address: str
    server_name: str
    failure: str | None = None
    cert_verified: bool | None = None
    tls_version: str = ""
    cipher_suite: str = ""
    t: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "address": self.address,
            "server_name": self.server_name,
            "failure": self.failure,
            "cert_verified": self.cert_verified,
            "tls_version": self.tls_version,
            "cipher_suite": self.cipher_suite,
            "t": round(self.t, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TLSHandshake:
        """Rebuild from ``to_json`` output."""
        return cls(
            str(data.get("address", "")),
            str(data.get("server_name", "")),
            data.get("failure"),
            data.get("cert_verified"),
            str(data.get("tls_version") or ""),
            str(data.get("cipher_suite") or ""),
            float(data.get("t") or 0.0),
        )


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """One HTTP(S) GET (OONI ``requests`` entry, flattened) with blockpage evidence."""

    url: str
    address: str
    failure: str | None = None
    status_code: int | None = None
    headers: dict[str, str] = field(default_factory=dict, hash=False)
    title: str = ""
    body_length: int | None = None
    body_truncated: bool = False
    blocked_by: str | None = None
    blockpage: str | None = None
    t: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "url": self.url,
            "address": self.address,
            "failure": self.failure,
            "status_code": self.status_code,
            "headers": dict(self.headers),
            "title": self.title,
            "body_length": self.body_length,
            "body_is_truncated": self.body_truncated,
            "blocked_by": self.blocked_by,
            "blockpage": self.blockpage,
            "t": round(self.t, 6),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HTTPResponse:
        """Rebuild from ``to_json`` output."""
        return cls(
            url=str(data.get("url", "")),
            address=str(data.get("address", "")),
            failure=data.get("failure"),
            status_code=data.get("status_code"),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
            title=str(data.get("title") or ""),
            body_length=data.get("body_length"),
            body_truncated=bool(data.get("body_is_truncated")),
            blocked_by=data.get("blocked_by"),
            blockpage=data.get("blockpage"),
            t=float(data.get("t") or 0.0),
        )


def net_failure(exc: BaseException) -> str:
    """OONI-style failure string for a socket or TLS exception."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or "").lower()
        if (
            "unable to get local issuer" in reason
            or "self-signed" in reason
            or "self signed" in reason
        ):
            return "ssl_unknown_authority"
        if "hostname" in reason or "ip address mismatch" in reason:
            return "ssl_invalid_hostname"
        return "ssl_invalid_certificate"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "generic_timeout_error"
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ConnectionResetError):
        return "connection_reset"
    if isinstance(
        exc, ssl.SSLEOFError | asyncio.IncompleteReadError | ConnectionAbortedError | EOFError
    ):
        return "eof_error"
    if isinstance(exc, ssl.SSLError):
        return f"ssl_error: {exc.reason or exc}"
    if isinstance(exc, OSError):
        if exc.errno == 113:
            return "host_unreachable"
        if exc.errno == 101:
            return "network_unreachable"
        return f"os_error_{exc.errno}" if exc.errno is not None else f"os_error: {exc}"
    return f"unknown_failure: {type(exc).__name__}: {exc}"


async def tcp_connect(ip: str, port: int, timeout: float) -> TCPConnect:
    """Open and close one TCP connection; record success or the failure."""
    start = time.monotonic()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except Exception as exc:
        return TCPConnect(ip, port, False, net_failure(exc), time.monotonic() - start)
    elapsed = time.monotonic() - start
    writer.close()
    with contextlib.suppress(Exception):  # closing a socket just reset is not a finding
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return TCPConnect(ip, port, True, None, elapsed)


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system roots, or only ``ca_file`` when given."""
    context = (
        ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    )
    context.set_alpn_protocols(["http/1.1"])
    return context


def parse_http(raw: bytes, truncated: bool) -> tuple[int, dict[str, str], bytes]:
    """Split a raw HTTP/1.x response into status, headers (lowercased names) and body."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("iso-8859-1").splitlines()
    if not lines or not lines[0].startswith("HTTP/"):
        raise ValueError("not an HTTP response")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked" and not truncated:
        body = _dechunk(body)
    return status, headers, body


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def blocked_by_link(headers: dict[str, str]) -> str | None:
    """The target of a ``Link: <...>; rel="blocked-by"`` header (RFC 7725 section 4)."""
    match = _LINK_BLOCKED_BY.search(headers.get("link", ""))
    return match.group(1) if match else None


def extract_title(body: bytes) -> str:
    """The page title, whitespace-collapsed, at most 200 characters."""
    match = _TITLE.search(body[:65536])
    if not match:
        return ""
    text = match.group(1).decode("utf-8", "replace")
    return " ".join(text.split())[:200]


def match_blockpage(title: str, body: bytes, headers: dict[str, str]) -> str | None:
    """The name of the first known blockpage fingerprint the response matches, or None."""
    text = body[:65536].decode("utf-8", "replace")
    fields = {"title": title, "body": text, "location": headers.get("location", "")}
    for fingerprint in FINGERPRINTS:
        if fingerprint.pattern.search(fields[fingerprint.where]):
            return fingerprint.name
    return None


async def fetch(
    target: Target,
    ip: str,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    max_body: int = MAX_BODY,
) -> tuple[TLSHandshake | None, HTTPResponse]:
    """Connect to ``ip``, shake hands with SNI for HTTPS targets, and GET the target.

    The whole exchange is bounded by ``timeout`` per step; the TLS record is None for
    plain HTTP targets. Never raises for network trouble.
    """
    start = time.monotonic()
    address = f"[{ip}]:{target.port}" if ":" in ip else f"{ip}:{target.port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, target.port), timeout)
    except Exception as exc:
        failure = net_failure(exc)
        return None, HTTPResponse(target.url, address, failure, t=time.monotonic() - start)
    tls: TLSHandshake | None = None
    try:
        if target.is_https:
            context = ssl_context or make_ssl_context()
            tls_start = time.monotonic()
            try:
                await asyncio.wait_for(
                    writer.start_tls(context, server_hostname=target.name), timeout
                )
            except Exception as exc:
                verified = False if isinstance(exc, ssl.SSLCertVerificationError) else None
                tls = TLSHandshake(
                    address, target.name, net_failure(exc), verified, t=time.monotonic() - tls_start
                )
                return tls, HTTPResponse(
                    target.url, address, tls.failure, t=time.monotonic() - start
                )
            ssl_object = writer.get_extra_info("ssl_object")
            cipher = writer.get_extra_info("cipher")
            tls = TLSHandshake(
                address,
                target.name,
                None,
                True,
                ssl_object.version() if ssl_object else "",
                cipher[0] if cipher else "",
                time.monotonic() - tls_start,
            )
        host = target.name if target.port in (80, 443) else f"{target.name}:{target.port}"
        request = (
            f"GET {target.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: text/html,*/*;q=0.8\r\nConnection: close\r\n\r\n"
        ).encode("ascii", "replace")
        writer.write(request)
        raw, truncated = await asyncio.wait_for(_read_all(reader, max_body), timeout)
        if not raw:
            return tls, HTTPResponse(target.url, address, "eof_error", t=time.monotonic() - start)
        status, headers, body = parse_http(raw, truncated)
        title = extract_title(body)
        return tls, HTTPResponse(
            url=target.url,
            address=address,
            status_code=status,
            headers=headers,
            title=title,
            body_length=len(body),
            body_truncated=truncated,
            blocked_by=blocked_by_link(headers),
            blockpage=match_blockpage(title, body, headers),
            t=time.monotonic() - start,
        )
    except ValueError:
        return tls, HTTPResponse(
            target.url, address, "http_invalid_response", t=time.monotonic() - start
        )
    except Exception as exc:
        return tls, HTTPResponse(target.url, address, net_failure(exc), t=time.monotonic() - start)
    finally:
        writer.close()
        with contextlib.suppress(Exception):  # the peer may already have reset it
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read_all(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    chunks = bytearray()
    while len(chunks) <= limit:
        try:
            data = await reader.read(65536)
        except ssl.SSLError:
            break  # servers that close without close_notify: keep what arrived
        if not data:
            return bytes(chunks), False
        chunks += data
    return bytes(chunks[:limit]), True


async def measure_web(
    target: Target,
    addresses: Sequence[str],
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> tuple[tuple[TCPConnect, ...], TLSHandshake | None, HTTPResponse | None]:
    """TCP connect to every address, then TLS and HTTP through the first that answered.

    Returns the connects, the handshake (HTTPS only) and the response; the last two are
    None when no address accepted a connection.
    """
    if not addresses:
        return (), None, None
    connects = tuple(
        await asyncio.gather(*(tcp_connect(ip, target.port, timeout) for ip in addresses))
    )
    reachable = next((c.ip for c in connects if c.success), None)
    if reachable is None:
        return connects, None, None
    tls, http = await fetch(target, reachable, timeout=timeout, ssl_context=ssl_context)
    return connects, tls, http
