"""One typed, frozen configuration for clearwall, loaded from TOML; a section per component.

Strings are parsed into value objects (addresses, CIDRs, durations) at load time, and
every error names the section and option. Defaults are the embedded single-machine setup:
SQLite at ``./var/clearwall.db`` with its ledger files beside it (``clearwall.layout``),
DNS on 127.0.0.1:8053, the web app on 127.0.0.1:8080.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearwall.errors import ClearwallError, ConfigError

DEFAULT_VAR = Path("var")


FILE = {"file": True}
"""Field metadata of an option typed ``str`` ("" meaning none) that names a file: a
relative one in a config file counts from the file, as every ``Path`` option."""


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or send to; ``host`` is an IP literal."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> HostPort:
        """Parse ``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 literal."""
        text = text.strip()
        host, port = text, default_port
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"unclosed '[' in {text!r}")
            host = text[1:end]
            rest = text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"junk after ']' in {text!r}")
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, port_text = text.split(":")
            port = int(port_text)
        ipaddress.ip_address(host)
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range in {text!r}")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EncryptedUpstream:
    """An upstream reached over TLS: DoT ``tls://IP[:PORT][#name]`` (RFC 7858) or DoH
    ``https://host[:PORT]/path`` (RFC 8484).

    ``name`` is what the upstream's certificate must be valid for: the part after ``#``
    for DoT (its IP address when absent), the URL's host for DoH.
    """

    scheme: str  # "tls" or "https"
    host: str  # an IP literal for tls://; a name or an IP literal for https://
    port: int
    name: str
    path: str = ""  # https:// only, e.g. "/dns-query"

    @classmethod
    def parse(cls, text: str) -> EncryptedUpstream:
        """Parse ``tls://IP[:PORT][#name]`` or ``https://host[:PORT]/path``."""
        text = text.strip()
        scheme, sep, rest = text.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in ("tls", "https"):
            raise ValueError(f"expected tls://IP[:PORT][#name] or https://host/path in {text!r}")
        if scheme == "tls":
            address, _, name = rest.partition("#")
            hp = HostPort.parse(address, 853)
            return cls("tls", hp.host, hp.port, name.strip().rstrip(".") or hp.host)
        import urllib.parse

        url = urllib.parse.urlsplit(text)
        if not url.hostname:
            raise ValueError(f"no host in {text!r}")
        if url.query or url.fragment:
            raise ValueError(f"a DoH upstream URL takes no query or fragment: {text!r}")
        host = url.hostname
        return cls("https", host, url.port or 443, host, url.path or "/dns-query")

    @property
    def url(self) -> str:
        """The DoH URL (``https://…``), or the DoT form it was written in."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "https":
            port = "" if self.port == 443 else f":{self.port}"
            return f"https://{host}{port}{self.path}"
        suffix = "" if self.name == self.host else f"#{self.name}"
        return f"tls://{host}:{self.port}{suffix}"

    def __str__(self) -> str:
        return self.url


UpstreamServer = HostPort | EncryptedUpstream
"""A plain (UDP, TCP on truncation) upstream address, or an encrypted one."""


def parse_upstream(text: str, default_port: int = 53) -> HostPort | EncryptedUpstream:
    """``IP[:PORT]`` for a plain upstream, ``tls://…`` or ``https://…`` for an encrypted one."""
    if "://" in text:
        return EncryptedUpstream.parse(text)
    return HostPort.parse(text, default_port)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the policy lives."""

    url: str = f"sqlite:///{DEFAULT_VAR}/clearwall.db"  # SQLAlchemy URL; postgresql+psycopg://…


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A witness the log asks for cosignatures: its submission URL and its vkey (type 0x04)."""

    url: str  # C2SP tlog-witness submission prefix; the log POSTs to <url>/add-checkpoint
    vkey: str  # the witness's verifier key, checked at load time


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The transparency log: key, tiles directory, public name, witnesses.

    The paths default to None: beside a SQLite store's file (``clearwall.layout``
    resolves them for the store in use); a PostgreSQL store needs both set.
    """

    key_file: Path | None = None  # Ed25519 signer, mode 0600, never logged
    tiles_dir: Path | None = None  # static C2SP tlog-tiles
    origin: str = "clearwall.example/log"  # checkpoint origin line and note key name
    witnesses: tuple[WitnessEndpoint, ...] = ()  # asked to cosign each new checkpoint
    witness_quorum: int = 0  # cosignatures that make a checkpoint witnessed
    witness_timeout: float = 5.0  # seconds per request to a witness
    witness_retry: float = 30.0  # seconds between the jobs' retries of lagging witnesses
    # The signer's verifier key: a node without the key file (one of several gateways on
    # one PostgreSQL store) serves and enforces only what that key signed.
    vkey: str = ""

    def __post_init__(self) -> None:
        """A quorum the configured witnesses can meet; with witnesses, a chosen one."""
        n = len(self.witnesses)
        if not 0 <= self.witness_quorum <= n:
            raise ConfigError(
                f"[ledger] witness_quorum: {self.witness_quorum} is not between 0 and the "
                f"{n} configured witness(es)"
            )
        if n and self.witness_quorum == 0:
            raise ConfigError(
                f"[ledger] witness_quorum: set how many of the {n} witnesses must cosign "
                f"(1..{n}; a majority is usual)"
            )
        if self.witness_timeout <= 0 or self.witness_retry <= 0:
            raise ConfigError("[ledger] witness_timeout and witness_retry must be positive")
        if self.vkey:
            from clearwall.ledger.signing import parse_vkey

            try:
                verifier = parse_vkey(self.vkey)
            except ClearwallError as exc:
                raise ConfigError(f"[ledger] vkey: {exc}") from exc
            if verifier.name != self.origin:
                raise ConfigError(
                    f"[ledger] vkey names the log {verifier.name!r} but origin is {self.origin!r}"
                )

    def to_request(self) -> dict[str, str | None]:
        """Where the log lives and which key verifies it, as JSON values: what the
        compiler process, which publishes the log, is sent with each request
        (``control.compiler``). The witnesses are not: it asks none."""
        return {
            "key_file": None if self.key_file is None else str(self.key_file),
            "tiles_dir": None if self.tiles_dir is None else str(self.tiles_dir),
            "origin": self.origin,
            "vkey": self.vkey,
        }

    @classmethod
    def from_request(cls, data: Mapping[str, Any]) -> LedgerConfig:
        """The ledger config ``to_request`` described."""
        key_file, tiles_dir = data["key_file"], data["tiles_dir"]
        return cls(
            key_file=None if key_file is None else Path(key_file),
            tiles_dir=None if tiles_dir is None else Path(tiles_dir),
            origin=data["origin"] or cls().origin,
            vkey=data["vkey"] or "",
        )

    def signs(self) -> bool:
        """Whether this node signs the log: it holds the key file, or names no ``vkey``
        (then a missing key file is an error where the key is needed, as before)."""
        return not self.vkey or self.key_path().exists()

    def key_path(self) -> Path:
        """The signer key file; ConfigError when it was not resolved for a store."""
        if self.key_file is None:
            raise ConfigError("[ledger] key_file is not resolved for a store (clearwall.layout)")
        return self.key_file

    def tiles_path(self) -> Path:
        """The public log's directory; ConfigError when it was not resolved for a store."""
        if self.tiles_dir is None:
            raise ConfigError("[ledger] tiles_dir is not resolved for a store (clearwall.layout)")
        return self.tiles_dir


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Where cache misses are forwarded, and how patiently."""

    # Empty: the nameservers ``resolv_conf`` lists (never the gateway itself). Plain
    # addresses, DoT ``tls://IP:PORT#name`` or DoH ``https://host/dns-query``, in the
    # order they are tried.
    servers: tuple[HostPort | EncryptedUpstream, ...] = ()
    resolv_conf: Path = Path("/etc/resolv.conf")  # read at start and on SIGHUP
    per_jurisdiction: Mapping[str, tuple[HostPort | EncryptedUpstream, ...]] = field(
        default_factory=dict
    )
    timeout: float = 1.5  # seconds per upstream attempt
    attempts: int = 2  # tries per server before failing over
    edns_buffer: int = 1232
    # Relay a positive answer with its answer section only, a negative one without its
    # additional section (Unbound's default minimal-responses): less amplification.
    minimal_responses: bool = True
    # PEM file of the CAs that encrypted upstreams' certificates must chain to; "" = the
    # system's trust store. A certificate that does not verify is refused.
    ca_file: str = field(default="", metadata=FILE)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Answer cache bounds (RFC 2308 negative caching, RFC 8767 serve-stale)."""

    max_entries: int = 100_000  # bound of forwarded answers, and of blocks (0: no cache)
    min_ttl: int = 0
    max_ttl: int = 86_400
    negative_ttl: int = 900  # cap for NXDOMAIN/NODATA (RFC 2308 section 5)
    serve_stale: bool = True
    stale_ttl: int = 30  # TTL of a stale answer (RFC 8767 section 4)
    max_stale: int = 86_400  # how long past expiry an answer may be served stale


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """RRL-style per-client-prefix limiting."""

    enabled: bool = True
    queries_per_second: float = 1000.0
    burst: float = 2000.0
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    slip: int = 2  # every Nth limited UDP reply is a truncated (TC) answer; 0 = drop all
    exempt_loopback: bool = True  # loopback clients (local tools, benchmarks) are not limited


@dataclass(frozen=True, slots=True)
class BlockConfig:
    """How block answers look."""

    ttl: int = 60
    sinkhole_ipv4: str = "127.0.0.1"  # where the block-page server listens
    sinkhole_ipv6: str = "::1"
    language: str = "en"
    operator: str = "clearwall operator"  # the SDE 'o' field
    public_url: str = "http://127.0.0.1:8080"  # base of order links in SDE and block pages


@dataclass(frozen=True, slots=True)
class SpecialUseConfig:
    """Special-use names answered locally, never forwarded (RFC 6761, RFC 6303)."""

    # Built-in local zones to forward instead, e.g. "10.in-addr.arpa" or "home.arpa" when
    # the upstream is the network's own resolver and serves them.
    forward: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.forward:
            return
        # Only here: the zone table lives with the handler that serves it.
        from clearwall.dnsserver.handlers.special_use import ZONES

        names = []
        for zone in self.forward:
            name = zone.strip().rstrip(".").lower()
            if name not in ZONES:
                raise ConfigError(
                    f"[dns.special_use] forward: {zone!r} is not a built-in local zone "
                    "(docs/dns/special_use.md lists them)"
                )
            names.append(name)
        object.__setattr__(self, "forward", tuple(names))


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """The DNS gateway: listeners, access control and the default jurisdiction."""

    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 8053),)
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    default_jurisdiction: str = ""  # for clients in no configured network; "" = none
    workers: int = 1
    # With several workers, run them under SCHED_BATCH (Linux): a worker woken by a
    # datagram then does not preempt another in the middle of its batch. Costs wake-up
    # latency when a core is shared with other busy tasks; false keeps the default policy.
    batch_scheduling: bool = True
    # Seconds since a TCP connection's last complete query received or reply sent (a byte
    # of an unfinished message does not count) before it is closed.
    tcp_idle_timeout: float = 10.0
    # TCP connections per process; when full, the one idle longest is closed for a new one.
    max_tcp_connections: int = 1000
    max_inflight: int = 10_000
    reload_interval: float = 0.25  # how often the store's policy version is polled
    # Quiet seconds after a change (enforced as an overlay) before the whole policy is
    # compiled again in the background and swapped in as the new base.
    consolidate_after: float = 5.0
    udp_batch: int = 32  # datagrams per recvmmsg/sendmmsg (Linux); 0 = one per system call
    # Encrypted listeners: DNS over TLS (RFC 7858, default port 853), DNS over HTTPS
    # (RFC 8484 at /dns-query, HTTP/2 and HTTP/1.1, default port 443) and DNS over QUIC
    # (RFC 9250, UDP, default port 853); each needs tls_cert and tls_key.
    dot: tuple[HostPort, ...] = ()
    doh: tuple[HostPort, ...] = ()
    doq: tuple[HostPort, ...] = ()
    tls_cert: str = field(default="", metadata=FILE)  # PEM chain of the encrypted listeners
    tls_key: str = field(default="", metadata=FILE)  # its PEM private key
    # RFC 8467 block-length padding of replies to EDNS queries on encrypted transports
    # (never on plain UDP/TCP): every such reply is a multiple of this many octets; 0 = none.
    padding_block: int = 468
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    block: BlockConfig = field(default_factory=BlockConfig)
    special_use: SpecialUseConfig = field(default_factory=SpecialUseConfig)

    def __post_init__(self) -> None:
        """Encrypted listeners need a certificate and its key; padding blocks are sane."""
        encrypted = self.dot or self.doh or self.doq
        if encrypted and not (self.tls_cert and self.tls_key):
            raise ConfigError(
                "[dns] dot/doh/doq need tls_cert and tls_key (a PEM certificate and its key; "
                "`clearwall init` makes a self-signed pair)"
            )
        if not 0 <= self.padding_block <= 4096:
            raise ConfigError("[dns] padding_block must be between 0 (none) and 4096")

    @property
    def encrypted(self) -> bool:
        """Whether any encrypted listener (DoT, DoH, DoQ) is configured."""
        return bool(self.dot or self.doh or self.doq)


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The web app: API, portal, block pages, metrics, log tiles."""

    listen: HostPort | None = HostPort("127.0.0.1", 8080)
    blockpage_listen: HostPort | None = None  # optional dedicated block-page listener
    # Background list refreshes reach public addresses only unless this is on: a URL that
    # was public when subscribed may later resolve inside the operator's network (SSRF).
    # An operator's own manual refresh may always reach internal addresses.
    subscriptions_fetch_internal: bool = False


# The longest client prefixes the query log may keep: a /24 (IPv4) or a /56 (IPv6) is a
# network, not a subscriber; anything longer could single out one household.
MAX_LOGGED_PREFIX_V4 = 24
MAX_LOGGED_PREFIX_V6 = 56


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """What the process logs. Client addresses are never logged, and individual queries
    are kept only when ``query_log`` is on (docs/querylog.md): then with each client
    address truncated to a network prefix, in a store bounded in size and age."""

    level: str = "INFO"
    query_log: bool = False
    client_prefix_v4: int = 24  # truncation applied when query_log is on (at most 24)
    client_prefix_v6: int = 48  # (at most 56)
    # Rotated segment files; None: querylog/ beside a SQLite store's file, else beside the
    # ledger key (clearwall.layout.querylog_dir).
    query_log_dir: Path | None = None
    query_log_max_mb: int = 1024  # oldest segments are deleted beyond this total size
    query_log_max_days: float = 7.0  # records older than this are deleted
    query_log_queue: int = 100_000  # records waiting for the writer before new ones drop

    def query_log_path(self) -> Path:
        """The query log's directory; ConfigError when it was not resolved for a store."""
        if self.query_log_dir is None:
            raise ConfigError(
                "[logging] query_log_dir is not resolved for a store (clearwall.layout)"
            )
        return self.query_log_dir

    def __post_init__(self) -> None:
        """Prefixes short enough to name a network, never a client; positive bounds."""
        if not 0 <= self.client_prefix_v4 <= MAX_LOGGED_PREFIX_V4:
            raise ConfigError(
                f"[logging] client_prefix_v4: {self.client_prefix_v4} is not between 0 and "
                f"{MAX_LOGGED_PREFIX_V4} (a longer prefix could identify a client)"
            )
        if not 0 <= self.client_prefix_v6 <= MAX_LOGGED_PREFIX_V6:
            raise ConfigError(
                f"[logging] client_prefix_v6: {self.client_prefix_v6} is not between 0 and "
                f"{MAX_LOGGED_PREFIX_V6} (a longer prefix could identify a client)"
            )
        if self.query_log_max_mb < 1:
            raise ConfigError("[logging] query_log_max_mb: must be at least 1")
        if self.query_log_max_days <= 0:
            raise ConfigError("[logging] query_log_max_days: must be positive")
        if self.query_log_queue < 1:
            raise ConfigError("[logging] query_log_queue: must be at least 1")


@dataclass(frozen=True, slots=True)
class Secondary:
    """A resolver fed by zone transfer: where NOTIFY goes, the TSIG key it uses, and the
    jurisdictions whose zones it loads (none named: all)."""

    address: HostPort
    key: str = ""  # a key name in [xfr] keys_file; "" = NOTIFY unsigned
    jurisdictions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Secondary:
        """Parse ``IP[:PORT] [key NAME] [for JUR[,JUR...]]`` (the port defaults to 53)."""
        fields = text.split()
        if not fields or len(fields) % 2 == 0:
            raise ValueError(f"expected 'IP[:PORT] [key NAME] [for JUR,...]', got {text!r}")
        options = dict(zip(fields[1::2], fields[2::2], strict=True))
        if set(options) - {"key", "for"} or len(options) != len(fields) // 2:
            raise ValueError(f"expected 'IP[:PORT] [key NAME] [for JUR,...]', got {text!r}")
        codes = tuple(c.strip().lower() for c in options.get("for", "").split(",") if c.strip())
        # A key name as the key file spells it (``xfr.keys``: lower case, no final dot).
        key = options.get("key", "").rstrip(".").lower()
        if "key" in options and not key:
            raise ValueError(f"an empty key name in {text!r}")
        return cls(HostPort.parse(fields[0], 53), key, codes)

    def __str__(self) -> str:
        text = str(self.address)
        if self.key:
            text += f" key {self.key}"
        if self.jurisdictions:
            text += f" for {','.join(self.jurisdictions)}"
        return text


@dataclass(frozen=True, slots=True)
class XfrConfig:
    """The RPZ primary: the policy served to resolver fleets by zone transfer (docs/xfr.md)."""

    listen: tuple[HostPort, ...] = ()  # UDP+TCP for SOA, AXFR, IXFR; () = off
    suffix: str = "rpz.clearwall."  # zones are JUR.censored.SUFFIX and JUR.blocked.SUFFIX
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # TSIG keys, one "name hmac-sha256 base64-secret" per line (``clearwall fleet key``).
    # When it holds a key, every request must be signed with one. None: beside a SQLite
    # store's file (``clearwall.layout``); a PostgreSQL store needs it set to use keys.
    keys_file: Path | None = None
    secondaries: tuple[Secondary, ...] = ()  # told by NOTIFY when their zones change
    ttl: int = 60  # TTL of every record, and the SOA minimum
    refresh: int = 60  # SOA timers: how often a secondary polls without NOTIFY,
    retry: int = 10  # how soon it tries again after a failure,
    expire: int = 604_800  # and how long it keeps enforcing without reaching us
    history: int = 64  # policy versions kept for IXFR; older serials get a full transfer
    reload_interval: float = 0.25  # seconds between polls of the store's log size
    notify_timeout: float = 1.0  # seconds to wait for a NOTIFY reply, doubled per retry
    notify_retries: int = 5
    idle_timeout: float = 30.0  # seconds a TCP connection may sit idle
    max_connections: int = 64  # concurrent TCP connections
    metrics_listen: HostPort | None = None  # Prometheus /metrics of the primary; None = off

    def __post_init__(self) -> None:
        suffix = self.suffix.strip(".")
        labels = suffix.split(".") if suffix else []
        if not all(label and len(label) <= 63 for label in labels) or len(suffix) > 200:
            raise ConfigError(f"[xfr] suffix: not a domain name: {self.suffix!r}")
        for name in ("ttl", "refresh", "retry", "expire", "history", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[xfr] {name}: must be at least 1")
        if self.notify_retries < 0:
            raise ConfigError("[xfr] notify_retries: must not be negative")
        for name in ("reload_interval", "notify_timeout", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"[xfr] {name}: must be positive")

    def keys_path(self) -> Path:
        """The TSIG key file; ConfigError naming the option when there is none: the store
        is not a SQLite file (so its keys have no place of their own) and the config does
        not name one."""
        if self.keys_file is None:
            raise ConfigError(
                "[xfr] keys_file must be set to use TSIG keys with a store that is not a "
                "SQLite file: the keys need a file of their own (see docs/xfr.md, 'TSIG and "
                "who may transfer')"
            )
        return self.keys_file


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """Following registries (``clearwall mirror``): how often ``serve``'s jobs sync them."""

    # Seconds between two passes over every mirrored registry: the longest a registry's
    # order waits before this installation adopts it (each pass fetches a checkpoint).
    interval: float = 60.0

    def __post_init__(self) -> None:
        """Refuse an interval that would spin (or never run)."""
        if not 0.1 <= self.interval <= 86400:
            raise ConfigError(f"[federation] interval: {self.interval} is not 0.1..86400 s")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; each component receives only its own section."""

    store: StoreConfig = field(default_factory=StoreConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    dns: DNSConfig = field(default_factory=DNSConfig)
    web: WebConfig = field(default_factory=WebConfig)
    xfr: XfrConfig = field(default_factory=XfrConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)


_DEFAULT_PORTS = {"dot": 853, "doh": 443, "doq": 853}  # listeners whose default is empty


def _convert(section: str, name: str, annotation: str, value: Any, default: Any) -> Any:
    """Turn one TOML value into the type the field declares; errors name the option."""
    where = f"[{section}] {name}"
    try:
        if "EncryptedUpstream" in annotation and "Mapping" in annotation:
            return {
                str(k): tuple(parse_upstream(str(v)) for v in ([vs] if isinstance(vs, str) else vs))
                for k, vs in value.items()
            }
        if "EncryptedUpstream" in annotation:
            items = [value] if isinstance(value, str) else list(value)
            return tuple(parse_upstream(str(v)) for v in items)
        if "Secondary" in annotation:
            items = [value] if isinstance(value, str) else list(value)
            return tuple(Secondary.parse(str(v)) for v in items)
        if "HostPort" in annotation and "tuple" in annotation and "Mapping" not in annotation:
            items = [value] if isinstance(value, str) else list(value)
            port = default[0].port if default else _DEFAULT_PORTS.get(name, 53)
            return tuple(HostPort.parse(str(v), port) for v in items)
        if "HostPort" in annotation and "Mapping" in annotation:
            return {
                str(k): tuple(HostPort.parse(str(v), 53) for v in vs) for k, vs in value.items()
            }
        if "HostPort" in annotation:
            if value in ("", None, False):
                return None
            return HostPort.parse(str(value), default.port if default else 8080)
        if "WitnessEndpoint" in annotation:
            return _witnesses(where, value)
        if "Network" in annotation:
            return tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
        if annotation == "Path":
            return Path(str(value))
        if annotation == "Path | None":
            if not isinstance(value, str):
                raise TypeError("expected a path (a string)")
            return Path(value) if value else None
        if annotation == "bool":
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
            return value
        if annotation == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError("expected an integer")
            return value
        if annotation == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError("expected a number")
            return float(value)
        if annotation == "str":
            if not isinstance(value, str):
                raise TypeError("expected a string")
            return value
        if annotation == "tuple[str, ...]":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                raise TypeError("expected a list of strings")
            return tuple(items)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    raise ConfigError(f"{where}: unsupported option type {annotation}")


def _witnesses(where: str, value: Any) -> tuple[WitnessEndpoint, ...]:
    """``[{ url = "http://…", vkey = "…" }, …]``, each vkey parsed as a witness key."""
    from clearwall.errors import ClearwallError
    from clearwall.ledger.cosignature import parse_cosigner_vkey

    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of {{ url = …, vkey = … }} tables")
    out: list[WitnessEndpoint] = []
    for n, item in enumerate(value, 1):
        at = f"{where}[{n}]"
        if not isinstance(item, Mapping) or set(item) != {"url", "vkey"}:
            raise ConfigError(f'{at}: expected exactly {{ url = "http://…", vkey = "…" }}')
        url, vkey = item["url"], item["vkey"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{at}.url: expected an http:// or https:// URL")
        try:
            parse_cosigner_vkey(str(vkey))
        except ClearwallError as exc:
            raise ConfigError(f"{at}.vkey: {exc}") from exc
        out.append(WitnessEndpoint(url.rstrip("/"), str(vkey).strip()))
    if len({w.vkey for w in out}) != len(out):
        raise ConfigError(f"{where}: the same witness key is listed twice")
    return tuple(out)


def _build(cls: type[Any], section: str, data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"[{section}] unknown option(s): {', '.join(sorted(unknown))}")
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        f = fields[name]
        annotation = str(f.type)
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default) and not isinstance(default, HostPort):
            sub = name if section == "config" else f"{section}.{name}"
            kwargs[name] = _build(type(default), sub, value)
        else:
            kwargs[name] = _convert(section, name, annotation, value, default)
    return cls(**kwargs)


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load the config from a TOML file (if given), then apply nested ``overrides``.

    Relative paths in the file are relative to the file's directory; paths in
    ``overrides`` (command-line flags) are taken as given.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        # A path in a file means the same wherever a command runs from: relative to the
        # file, never to the working directory.
        _anchor_paths(Config, data, Path(path).parent)
        _anchor_store_url(data, Path(path).parent)
    if overrides:
        data = _merge(data, overrides)
    return _build(Config, "config", data)  # type: ignore[no-any-return]


def _anchor_store_url(data: dict[str, Any], base: Path) -> None:
    """Make a relative SQLite file in ``[store] url`` relative to ``base`` (the config
    file's directory): ``sqlite:///var/cw.db`` in /etc/clearwall/x.toml is
    /etc/clearwall/var/cw.db, whatever directory a command (or systemd) runs in."""
    store = data.get("store")
    if not isinstance(store, dict) or not isinstance(store.get("url"), str):
        return
    url: str = store["url"]
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite") or not rest or rest.startswith(":memory:"):
        return  # not a SQLite file (four slashes, "sqlite:////x", are an absolute path)
    if rest.startswith("/") or rest.startswith("file:"):
        return
    store["url"] = f"{scheme}:///{(base / rest).absolute()}"


def _anchor_paths(cls: type[Any], data: dict[str, Any], base: Path) -> None:
    """Make the relative path options of ``data`` (a table for ``cls``) relative to ``base``."""
    if not isinstance(data, dict):
        return  # _build reports the type error with the option's name
    defaults = cls()
    for f in dataclasses.fields(cls):
        value = data.get(f.name)
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(default) and not isinstance(default, HostPort):
            if isinstance(value, dict):
                _anchor_paths(type(default), value, base)
        elif (
            ("Path" in str(f.type) or f.metadata.get("file", False))
            and isinstance(value, str)
            and value
            and not Path(value).is_absolute()
        ):
            data[f.name] = str(base / value)


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
