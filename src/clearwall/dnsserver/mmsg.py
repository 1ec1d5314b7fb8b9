"""Batched UDP I/O on Linux: ``recvmmsg(2)``/``sendmmsg(2)`` through ctypes.

A ``BatchedUDP`` owns one non-blocking UDP socket registered with ``loop.add_reader``.
Each wake-up drains up to ``batch`` datagrams per ``recvmmsg`` into buffers allocated
once, runs each through ``answer`` (the same synchronous path the datagram protocol
uses) and flushes the synchronous replies with one ``sendmmsg``; replies that come
later (cache misses) and the rest of a partial or refused ``sendmmsg`` go out with
``sendto``. Client addresses reach the chain as the same ``(host, port)`` strings the
datagram transport gives, memoized per raw address bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import mmap
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)
_SLOT = 65536  # per datagram: no UDP payload is larger, so nothing is ever truncated
_MSG_DONTWAIT = 0x40
_MEMO_MAX = 65536


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint32)]


def _load() -> tuple[Any, Any] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return recv, send


_CALLS = _load()


def available() -> bool:
    """True where ``recvmmsg`` and ``sendmmsg`` are in libc (Linux)."""
    return _CALLS is not None


Send = Callable[[bytes | None], None]
Fast = Callable[[bytes, str], bytes | None]
"""(query, client host) -> reply, or None: take ``General`` (the chain's fast path)."""
General = Callable[[bytes, str, int, Callable[[], Send]], bytes | None]
"""(query, client host, client port, make a later sender) -> reply to send now, or None."""


class Dispatcher(Protocol):
    """What the reader needs of the server's dispatcher."""

    fast: Fast | None

    def udp(self, data: bytes, host: str, port: int, later: Callable[[], Send]) -> bytes | None: ...


class _Headers:
    """``count`` mmsghdrs with one iovec and one sockaddr slot each, over ``buf``."""

    def __init__(self, count: int, namesize: int) -> None:
        self.buf = mmap.mmap(-1, count * _SLOT)  # anonymous: pages appear when written
        self.data = memoryview(self.buf)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.buf))
        self.names = (ctypes.c_char * (count * namesize))()
        self.iov = (_IOVec * count)()
        self.hdrs = (_MMsgHdr * count)()
        names = ctypes.addressof(self.names)
        for i in range(count):
            self.iov[i].base = base + i * _SLOT
            self.iov[i].len = _SLOT
            h = self.hdrs[i].hdr
            h.name = names + i * namesize
            h.namelen = namesize
            h.iov = ctypes.addressof(self.iov[i])
            h.iovlen = 1
        self.ptr = ctypes.addressof(self.hdrs)
        self.name_view = memoryview(self.names).cast("B")
        words = ctypes.sizeof(_MMsgHdr) // 4
        self.words = words
        self.u32 = memoryview(self.hdrs).cast("B").cast("I")
        self.len_at = _MMsgHdr.len.offset // 4
        self.namelen_at = _MsgHdr.namelen.offset // 4
        self.iov_u64 = memoryview(self.iov).cast("B").cast("Q")
        self.iov_len_at = _IOVec.len.offset // 8
        self.iov_words = ctypes.sizeof(_IOVec) // 8

    def close(self) -> None:
        self.name_view.release()
        self.u32.release()
        self.iov_u64.release()
        self.data.release()
        self.buf.close()


class BatchedUDP:
    """One UDP socket served with ``recvmmsg``/``sendmmsg`` batches of ``batch``."""

    def __init__(self, sock: socket.socket, batch: int, dispatcher: Dispatcher) -> None:
        assert _CALLS is not None
        self.sock = sock
        self.fd = sock.fileno()
        self.batch = batch
        self.dispatcher = dispatcher  # its fast path is read per wake-up (it may be swapped)
        self.v6 = sock.family == socket.AF_INET6
        self.namesize = 28 if self.v6 else 16
        self.rx = _Headers(batch, self.namesize)
        self.tx = _Headers(batch, self.namesize)
        self.hosts: dict[bytes, str] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        sock.setblocking(False)

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
        self.rx.close()
        self.tx.close()

    def _host(self, raw: bytes) -> str:
        if self.v6:
            host = socket.inet_ntop(socket.AF_INET6, raw[:16])
            scope = int.from_bytes(raw[16:20], sys.byteorder)
            if scope:
                host = socket.getnameinfo(
                    (host, 0, 0, scope), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
                )[0]
        else:
            host = socket.inet_ntop(socket.AF_INET, raw)
        if len(self.hosts) >= _MEMO_MAX:
            self.hosts.clear()
        self.hosts[raw] = host
        return host

    def _addr(self, host: str, port: int, name: bytes) -> tuple[Any, ...]:
        if self.v6:
            flow = int.from_bytes(name[4:8], "big")
            scope = int.from_bytes(name[24:28], sys.byteorder)
            return (host, port, flow, scope)
        return (host, port)

    def _readable(self) -> None:
        assert _CALLS is not None
        recvmmsg, sendmmsg = _CALLS
        rx, tx = self.rx, self.tx
        batch, fd = self.batch, self.fd
        data, names, u32 = rx.data, rx.name_view, rx.u32
        words, len_at, namelen_at = rx.words, rx.len_at, rx.namelen_at
        tdata, tnames, tiov, tiov_w, tiov_at = (
            tx.data,
            tx.name_view,
            tx.iov_u64,
            tx.iov_words,
            tx.iov_len_at,
        )
        hosts, ns = self.hosts, self.namesize
        fast, general = self.dispatcher.fast, self.dispatcher.udp
        a0, a1 = (8, 28) if self.v6 else (4, 8)  # address (and scope id) inside the sockaddr
        for _round in range(4):  # then yield to the loop; level-triggered, it calls again
            n = recvmmsg(fd, rx.ptr, batch, _MSG_DONTWAIT, None)
            if n <= 0:
                err = ctypes.get_errno()
                if n < 0 and err not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    continue  # e.g. ECONNREFUSED queued by ICMP for an earlier reply
                return
            k = 0
            for i in range(n):
                off = i * _SLOT
                query = data[off : off + u32[i * words + len_at]].tobytes()
                u32[i * words + namelen_at] = ns
                noff = i * ns
                name = names[noff : noff + ns]
                raw = name[a0:a1].tobytes()
                host = hosts.get(raw) or self._host(raw)
                out = None
                if fast is not None:
                    try:
                        out = fast(query, host)
                    except Exception:  # a bug there must not cost the query: the chain answers
                        log.exception("fast path failed")
                if out is None:
                    port = (name[2] << 8) | name[3]
                    out = general(query, host, port, self._later(host, port, name.tobytes()))
                    if out is None:
                        continue
                toff = k * _SLOT
                size = len(out)
                tdata[toff : toff + size] = out
                tiov[k * tiov_w + tiov_at] = size
                tnames[k * ns : k * ns + ns] = name
                k += 1
            if k:
                self._flush(sendmmsg, k)
            if n < batch:
                return

    def _flush(self, sendmmsg: Any, k: int) -> None:
        tx = self.tx
        sent = 0
        while sent < k:
            m = sendmmsg(self.fd, tx.ptr + sent * ctypes.sizeof(_MMsgHdr), k - sent, _MSG_DONTWAIT)
            if m <= 0:
                break
            sent += m
        for j in range(sent, k):  # EAGAIN or an error part-way: one at a time, else drop
            off = j * _SLOT
            size = tx.iov_u64[j * tx.iov_words + tx.iov_len_at]
            name = tx.name_view[j * self.namesize : (j + 1) * self.namesize].tobytes()
            a0, a1 = (8, 28) if self.v6 else (4, 8)
            raw = name[a0:a1]
            host = self.hosts.get(raw) or self._host(raw)
            addr = self._addr(host, (name[2] << 8) | name[3], name)
            with contextlib.suppress(OSError):
                self.sock.sendto(tx.data[off : off + size], addr)

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
