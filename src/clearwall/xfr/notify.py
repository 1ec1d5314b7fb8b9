"""NOTIFY (RFC 1996): tell each secondary the moment a zone has a new serial, until it answers.

One task per (secondary, zone): a newer serial replaces a pending one (the secondary
fetches the newest anyway). A NOTIFY unanswered after ``timeout`` seconds is sent again
after a back-off that doubles each time, ``retries`` times; then it is given up and
counted as failed (the secondary still finds the change at its next SOA refresh). A
secondary that answers with an error (it does not serve the zone, or refuses us) is
not asked again. Signed with the secondary's TSIG key when it has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig

from clearwall.config import Secondary
from clearwall.errors import ConfigError
from clearwall.formats.export import rpz_soa
from clearwall.xfr.metrics import XfrMetrics

log = logging.getLogger(__name__)


class _Reply(asyncio.DatagramProtocol):
    """Receives the replies to one NOTIFY socket."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        """Queue a reply for whoever waits on this NOTIFY."""
        self.replies.put_nowait(data)


def notify_message(
    zone: str, serial: int, soa: str | None = None, key: dns.tsig.Key | None = None
) -> dns.message.Message:
    """A NOTIFY for ``zone``: opcode NOTIFY, AA, the SOA question and, as RFC 1996
    section 3.7 allows, the new SOA in the answer section."""
    message = dns.message.make_query(zone, dns.rdatatype.SOA)
    message.flags = dns.flags.AA  # and not RD; the opcode lives in the same field, so after
    message.set_opcode(dns.opcode.NOTIFY)
    if soa is not None:
        message.answer.append(dns.rrset.from_text(zone, 0, "IN", "SOA", soa))
    if key is not None:
        message.use_tsig(key)
    return message


class Notifier:
    """Sends NOTIFY to every configured secondary, retrying with back-off."""

    def __init__(
        self,
        secondaries: Sequence[Secondary],
        keys: Mapping[str, dns.tsig.Key],
        metrics: XfrMetrics,
        timeout: float = 1.0,
        retries: int = 5,
        soa: tuple[int, int, int, int] = (60, 10, 604_800, 60),
    ) -> None:
        """Notify ``secondaries``; ``keys`` by name for the ones that sign; ``soa`` =
        (refresh, retry, expire, ttl) of the SOA record the NOTIFY carries."""
        for secondary in secondaries:
            if secondary.key and secondary.key not in keys:
                raise ConfigError(
                    f"[xfr] secondaries: {secondary}: no key {secondary.key!r} in keys_file"
                )
        self.secondaries = tuple(secondaries)
        self.keys = dict(keys)
        self.metrics = metrics
        self.timeout = timeout
        self.retries = retries
        self.soa = soa
        self._tasks: dict[tuple[Secondary, str], asyncio.Task[None]] = {}

    def notify(self, zone: str, serial: int, jurisdiction: str = "") -> None:
        """Start notifying every secondary that loads ``jurisdiction``'s zones of ``zone``
        at ``serial`` (call on the loop)."""
        for secondary in self.secondaries:
            if (
                jurisdiction
                and secondary.jurisdictions
                and (jurisdiction not in secondary.jurisdictions)
            ):
                continue
            key = (secondary, zone)
            pending = self._tasks.get(key)
            if pending is not None and not pending.done():
                pending.cancel()
            task = asyncio.ensure_future(self._notify(secondary, zone, serial))
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: tuple[Secondary, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def wait(self) -> None:
        """Wait until every pending NOTIFY is acknowledged or given up (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def cancel(self) -> None:
        """Stop every pending NOTIFY."""
        for task in self._tasks.values():
            task.cancel()

    async def _notify(self, secondary: Secondary, zone: str, serial: int) -> None:
        name = str(secondary.address)
        refresh, retry, expire, ttl = self.soa
        key = self.keys.get(secondary.key) if secondary.key else None
        loop = asyncio.get_running_loop()
        host, port = secondary.address.host, secondary.address.port
        transport, protocol = await loop.create_datagram_endpoint(_Reply, remote_addr=(host, port))
        try:
            wait = self.timeout
            for attempt in range(self.retries + 1):
                message = notify_message(
                    zone, serial, rpz_soa(serial, ttl, refresh, retry, expire), key
                )
                wire = message.to_wire()
                if attempt:
                    self.metrics.notify_retries.labels(name).inc()
                self.metrics.notify_sent.labels(name).inc()
                transport.sendto(wire)
                answered = await self._reply(protocol, message, wait)
                if answered is not None:
                    if answered == dns.rcode.NOERROR:
                        self.metrics.notify_acked.labels(name).inc()
                        log.debug("xfr: %s acknowledged NOTIFY %s serial %d", name, zone, serial)
                    else:
                        self.metrics.notify_failed.labels(name).inc()
                        log.warning(
                            "xfr: %s answered NOTIFY for %s with %s",
                            name,
                            zone,
                            dns.rcode.to_text(dns.rcode.Rcode(answered)),
                        )
                    return
                wait *= 2
            self.metrics.notify_failed.labels(name).inc()
            log.warning(
                "xfr: NOTIFY for %s serial %d to %s unanswered after %d tries; the secondary "
                "will see the change at its next SOA refresh",
                zone,
                serial,
                name,
                self.retries + 1,
            )
        finally:
            transport.close()

    async def _reply(
        self, protocol: _Reply, message: dns.message.Message, wait: float
    ) -> int | None:
        """The rcode of the reply to ``message`` within ``wait`` seconds, else None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(protocol.replies.get(), left)
            except TimeoutError:
                return None
            with contextlib.suppress(dns.exception.DNSException, ValueError):
                reply = dns.message.from_wire(
                    data,
                    keyring=message.keyring or False,
                    request_mac=message.mac or b"",
                )
                if reply.id == message.id and reply.opcode() == dns.opcode.NOTIFY:
                    return int(reply.rcode())
