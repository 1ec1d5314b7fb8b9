"""The standard chain's UDP fast path, fused in C (see ``dnsserver.fused``)."""

from collections.abc import Callable
from typing import Any

class ReplyTable:
    """Rendered replies the fast path serves, one C record per (jurisdiction, query
    after its ID): the reply after its ID, until when it is fresh, its count key and
    deciding order. Emptied by ``clear`` and whenever ``put`` would outgrow the bound."""

    def __init__(self, max_entries: int) -> None:
        """An empty table of at most ``max_entries`` (>= 1, else ValueError)."""

    def put(
        self, jurisdiction: str, key: bytes, tail: bytes, until: float, count: object, order: object
    ) -> bool:
        """Keep ``tail`` for (``jurisdiction``, ``key``) until ``until`` on the cache's
        clock; False when too long to keep (over 65535 bytes)."""

    def get(self, jurisdiction: str, key: bytes) -> tuple[bytes, float, object, object] | None:
        """(tail, until, count, order) kept for the pair, or None (for tests)."""

    def clear(self) -> None:
        """Drop every entry."""

    def __len__(self) -> int:
        """The number of entries."""

class FusedPath:
    """``path(data, host) -> bytes | None``: the composed fast path's steps in one call."""

    table: ReplyTable

    def __init__(
        self,
        acl_memo: dict[str, Any],
        exempt: set[str] | None,
        prefixes: dict[str, str] | None,
        buckets: dict[str, list[float]] | None,
        limiter_clock: Callable[[], float] | None,
        rate: float,
        burst: float,
        jurisdiction: dict[str, str],
        table: ReplyTable,
        clock: Callable[[], float],
        metrics: Any,
        counts: dict[Any, int],
        blocks: dict[int, int],
    ) -> None:
        """Work on these handlers' objects; see the module docstring."""

    def __call__(self, data: bytes, host: str, /) -> bytes | None:
        """The reply to ``data`` from ``host``, or None for the general chain."""
