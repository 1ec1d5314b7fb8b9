"""Batched UDP I/O on Linux: ``recvmmsg(2)``/``sendmmsg(2)`` through ``_udpbatch``.

A ``BatchedUDP`` owns one non-blocking UDP socket registered with ``loop.add_reader``.
Each wake-up, the C module ``_udpbatch`` drains up to four batches of ``batch``
datagrams, hands each to the chain's fast path, when that declines to the fused miss
path (``forward``; it replies later itself), and else to the general path (the same
synchronous code the datagram protocol runs), and sends the synchronous replies of a
batch with one ``sendmmsg``. Replies that come later (cache misses) go out with
``sendto``. Client addresses reach the chain as the same ``host`` strings the
datagram transport gives. The C part does only I/O and bookkeeping: in Python that loop
cost about as much again as the kernel's own work per datagram (see ``_udpbatch.c``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

from clearwall.dnsserver import _udpbatch

log = logging.getLogger(__name__)


def available() -> bool:
    """True where ``recvmmsg`` and ``sendmmsg`` exist (Linux) and the module was built."""
    return bool(_udpbatch.AVAILABLE)


Send = Callable[[bytes | None], None]
Fast = Callable[[bytes, str], bytes | None]
"""(query, client host) -> reply, or None: take ``General`` (the chain's fast path)."""
General = Callable[[bytes, str, int, Callable[[], Send]], bytes | None]
"""(query, client host, client port, make a later sender) -> reply to send now, or None."""


Miss = Callable[[bytes, str, bytes, int], bool | None]
"""(query, client host, sockaddr, listener fd) -> True when taken (the fused miss path)."""


class Dispatcher(Protocol):
    """What the reader needs of the server's dispatcher."""

    fast: Fast | None

    @property
    def miss_path(self) -> Miss | None:
        """The fused miss path (read per wake-up: a rebuild may replace it)."""
        ...

    def udp(self, data: bytes, host: str, port: int, later: Callable[[], Send]) -> bytes | None: ...


def _report(exc: BaseException, where: str) -> None:
    """Log an exception raised while answering one datagram (the others go on)."""
    log.error("%s failed", where, exc_info=exc)


class BatchedUDP:
    """One UDP socket served with ``recvmmsg``/``sendmmsg`` batches of ``batch``."""

    def __init__(self, sock: socket.socket, batch: int, dispatcher: Dispatcher) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.dispatcher = dispatcher  # its fast path is read per wake-up (it may be swapped)
        self.v6 = sock.family == socket.AF_INET6
        self.io = _udpbatch.Batch(self.fd, batch, self.v6)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Register the socket with the loop."""
        self.loop = loop
        loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        """Unregister and close the socket (later replies are dropped)."""
        if self.loop is not None:
            self.loop.remove_reader(self.fd)
            self.loop = None
        self.sock.close()

    def _readable(self) -> None:
        # Level-triggered: what is left after four batches wakes the loop again.
        dispatcher = self.dispatcher
        self.io.serve(dispatcher.fast, dispatcher.miss_path, self._general, _report)

    def _general(self, query: bytes, host: str, port: int, name: bytes) -> bytes | None:
        """The general path for one datagram; ``name`` is the client's raw sockaddr."""
        return self.dispatcher.udp(query, host, port, self._later(host, port, name))

    def _addr(self, host: str, port: int, name: bytes) -> tuple[Any, ...]:
        if self.v6:  # sockaddr_in6: flow info (network order) and scope id (host order)
            flow = int.from_bytes(name[4:8], "big")
            scope = int.from_bytes(name[24:28], sys.byteorder)
            return (host, port, flow, scope)
        return (host, port)

    def _later(self, host: str, port: int, name: bytes) -> Callable[[], Send]:
        """A maker of the sender for a reply that comes after this batch (a cache miss)."""

        def make() -> Send:
            sock = self.sock
            addr = self._addr(host, port, name)

            def send(out: bytes | None) -> None:
                if out is not None and self.loop is not None:
                    with contextlib.suppress(OSError):
                        sock.sendto(out, addr)

            return send

        return make
