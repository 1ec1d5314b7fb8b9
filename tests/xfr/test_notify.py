"""NOTIFY: sent to each secondary, retried with a doubling back-off until answered, given
up and counted when never answered, signed with the secondary's key."""

from __future__ import annotations

import asyncio
import base64

import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest

from clearwall.config import HostPort, Secondary
from clearwall.errors import ConfigError
from clearwall.xfr.metrics import XfrMetrics
from clearwall.xfr.notify import Notifier

ZONE = "xa.censored.rpz.clearwall."
SECRET = base64.b64encode(b"k" * 32).decode()


class FakeSecondary(asyncio.DatagramProtocol):
    """Ignores the first ``drop`` NOTIFYs, then answers (checking TSIG with ``keyring``)."""

    def __init__(self, drop: int = 0, keyring: dict | None = None, rcode: int = 0) -> None:
        self.drop = drop
        self.keyring = keyring
        self.rcode = rcode
        self.seen: list[tuple[float, dns.message.Message]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = dns.message.from_wire(data, keyring=self.keyring)
        self.seen.append((asyncio.get_running_loop().time(), message))
        if len(self.seen) <= self.drop:
            return
        reply = dns.message.make_response(message)
        reply.set_rcode(dns.rcode.Rcode(self.rcode))
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


async def secondary(protocol: FakeSecondary) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    return transport, transport.get_extra_info("sockname")[1]


def counts(metrics: XfrMetrics, name: str) -> tuple[float, float, float, float]:
    return tuple(  # type: ignore[return-value]
        c.labels(name)._value.get()
        for c in (
            metrics.notify_sent,
            metrics.notify_retries,
            metrics.notify_acked,
            metrics.notify_failed,
        )
    )


async def test_notify_is_retried_with_back_off_until_answered() -> None:
    fake = FakeSecondary(drop=2)
    transport, port = await secondary(fake)
    metrics = XfrMetrics()
    target = Secondary(HostPort("127.0.0.1", port))
    notifier = Notifier([target], {}, metrics, timeout=0.1, retries=5)
    notifier.notify(ZONE, 42)
    await notifier.wait()
    transport.close()
    assert counts(metrics, str(target.address)) == (3, 2, 1, 0)
    message = fake.seen[0][1]
    assert message.opcode() == dns.opcode.NOTIFY
    assert message.question[0].rdtype == dns.rdatatype.SOA
    assert message.answer[0][0].serial == 42
    gaps = [b[0] - a[0] for a, b in zip(fake.seen, fake.seen[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # the wait doubles: 0.1 s, then 0.2 s


async def test_an_unanswered_notify_is_given_up_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeSecondary(drop=100)
    transport, port = await secondary(fake)
    metrics = XfrMetrics()
    target = Secondary(HostPort("127.0.0.1", port))
    notifier = Notifier([target], {}, metrics, timeout=0.02, retries=2)
    notifier.notify(ZONE, 7)
    await notifier.wait()
    transport.close()
    assert counts(metrics, str(target.address)) == (3, 2, 0, 1)
    assert "unanswered after 3 tries" in caplog.text


async def test_an_error_answer_is_not_retried() -> None:
    fake = FakeSecondary(rcode=dns.rcode.REFUSED)
    transport, port = await secondary(fake)
    metrics = XfrMetrics()
    target = Secondary(HostPort("127.0.0.1", port))
    notifier = Notifier([target], {}, metrics, timeout=0.1, retries=5)
    notifier.notify(ZONE, 7)
    await notifier.wait()
    transport.close()
    assert counts(metrics, str(target.address)) == (1, 0, 0, 1)


async def test_notify_is_signed_with_the_secondarys_key() -> None:
    keyring = dns.tsigkeyring.from_text({"sec1": ("hmac-sha256", SECRET)})
    fake = FakeSecondary(keyring=keyring)
    transport, port = await secondary(fake)
    metrics = XfrMetrics()
    target = Secondary(HostPort("127.0.0.1", port), "sec1")
    key = dns.tsig.Key("sec1", SECRET, "hmac-sha256")
    notifier = Notifier([target], {"sec1": key}, metrics, timeout=0.2)
    notifier.notify(ZONE, 9)
    await notifier.wait()
    transport.close()
    assert fake.seen[0][1].had_tsig
    assert counts(metrics, str(target.address)) == (1, 0, 1, 0)


def test_a_secondary_naming_an_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no key 'nobody' in keys_file"):
        Notifier([Secondary(HostPort("127.0.0.1", 53), "nobody")], {}, XfrMetrics())


async def test_secondaries_are_notified_of_their_jurisdictions_only() -> None:
    fake = FakeSecondary()
    transport, port = await secondary(fake)
    metrics = XfrMetrics()
    target = Secondary(HostPort("127.0.0.1", port), jurisdictions=("xa",))
    notifier = Notifier([target], {}, metrics, timeout=0.2)
    notifier.notify("xb.censored.rpz.clearwall.", 3, "xb")
    notifier.notify(ZONE, 3, "xa")
    await notifier.wait()
    transport.close()
    assert [str(m.question[0].name) for _t, m in fake.seen] == [ZONE]
