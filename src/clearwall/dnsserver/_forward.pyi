"""The standard chain's cache-miss path in C: Engine (upstream sockets) and MissPath."""

from collections.abc import Callable
from typing import Any

AVAILABLE: int
"""1 where the engine exists (Linux, little-endian), else 0 and the types are absent."""

class Engine:
    """The fused miss path's upstream UDP sockets: one epoll set for the event loop to
    watch, a fresh socket on a random ephemeral port and a random ID per attempt."""

    pending: int
    """Queries in flight."""
    port_range: tuple[int, int]
    """The ephemeral port range source ports are drawn from (inclusive)."""
    sent: int
    """Upstream queries sent."""
    fallback_binds: int
    """Sockets for which every drawn port was taken (the kernel chose one)."""

    def __init__(self) -> None: ...
    def fileno(self) -> int:
        """The descriptor the event loop watches."""
    def poll(self) -> None:
        """Read the replies that arrived; expire the attempts that timed out."""
    def close(self) -> None:
        """Close every socket; queries in flight get no reply."""
    def listen(self, fd: int, /) -> None:
        """Replies may be sent from this listening UDP socket."""
    def forget(self, fd: int, /) -> None:
        """The listener is closing: its clients' replies are dropped."""
    def send(self, fd: int, sockaddr: bytes, data: bytes, /) -> bool:
        """Send ``data`` to ``sockaddr`` from listener ``fd`` if it is still open."""

class MissPath:
    """``miss(query, host, sockaddr, listen_fd)``: True when it took the query (its
    reply follows from the listener), None when the general chain must answer.

    A route (``default``, or a jurisdiction's in ``per_jurisdiction``) given as None is
    declined: its queries take the general chain (an encrypted upstream there). With
    ``record``, each answer sent from C is recorded: ``record(host, after_id, rcode,
    jurisdiction, arrived)``, ``arrived`` on ``time.perf_counter``'s clock."""

    engine: Engine

    def __init__(
        self,
        *,
        engine: Engine,
        acl_memo: dict[str, Any],
        exempt: set[str] | None,
        prefixes: dict[str, str] | None,
        buckets: dict[str, list[float]] | None,
        limiter_clock: Callable[[], float] | None,
        rate: float,
        burst: float,
        jurisdiction: dict[str, str],
        endings: tuple[str, ...],
        cache: Any,
        clock: Callable[[], float],
        records: Any,
        blocks: dict[bytes, Any],
        cache_min_ttl: int,
        cache_max_ttl: int,
        policy: Any,
        allowed: object,
        metrics: Any,
        counts: dict[Any, int],
        default: tuple[tuple[str, int], ...] | None,
        per_jurisdiction: dict[str, tuple[tuple[str, int], ...] | None],
        timeout: float,
        attempts: int,
        payload: int,
        minimal: bool,
        negative_ttl: int,
        min_ttl: int,
        max_ttl: int,
        max_inflight: int,
        handoff: Callable[..., None],
        record: Callable[[str, bytes, int, str, float], None] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None: ...
    def __call__(self, query: bytes, host: str, sockaddr: bytes, listen_fd: int, /) -> bool | None:
        """Take the query (True) or decline it with no trace (None)."""
    def stats(self) -> dict[str, int]:
        """Queries taken, handed to Python and finished in C."""
