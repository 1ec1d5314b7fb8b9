"""Batched UDP I/O (recvmmsg/sendmmsg) for the DNS listener; Linux only (C extension)."""

from collections.abc import Callable

AVAILABLE: int
"""1 where the platform has recvmmsg/sendmmsg (Linux), else 0 and ``Batch`` is absent."""

class Batch:
    """recvmmsg/sendmmsg buffers for one non-blocking UDP socket."""

    def __init__(self, fd: int, batch: int, v6: bool) -> None: ...
    def serve(
        self,
        fast: Callable[[bytes, str], bytes | None] | None,
        miss: Callable[[bytes, str, bytes, int], bool | None] | None,
        general: Callable[[bytes, str, int, bytes], bytes | None],
        on_error: Callable[[BaseException, str], None],
        /,
    ) -> int:
        """Drain up to four batches; each datagram goes to ``fast(query, host)`` and, when
        that returns None or raises, to ``miss(query, host, sockaddr, fd)`` (True: it took
        the query and replies itself later), else to ``general(query, host, port,
        sockaddr)``; replies go back with one sendmmsg per batch; exceptions go to
        ``on_error(exc, where)``. Returns the number of datagrams read."""
