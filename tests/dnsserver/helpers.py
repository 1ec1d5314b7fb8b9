"""Helpers for the DNS tests: run a query through a built chain, read EDE/SDE options."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import dns.edns
import dns.message

from clearwall.dnsserver import wire
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.gateway import Gateway


async def through_chain(
    gw: Gateway, query: bytes, host: str = "127.0.0.1", tcp: bool = False
) -> bytes | None:
    """Run raw query bytes through the gateway's chain as if from ``host``; the reply bytes."""
    q = wire.parse_query(query)
    ctx = Context(query, host, 5353, tcp, q)
    result = gw.chain(ctx)
    if not hasattr(result, "kind"):
        await asyncio.ensure_future(result)  # type: ignore[arg-type]
    return ctx.reply


async def ask(
    gw: Gateway,
    name: str,
    rdtype: str = "A",
    *,
    host: str = "127.0.0.1",
    tcp: bool = False,
    **kwargs: Any,
) -> dns.message.Message:
    """Ask through the chain with a dnspython-built query; parse the reply with dnspython."""
    kwargs.setdefault("use_edns", 0)
    msg = dns.message.make_query(name, rdtype, **kwargs)
    reply = await through_chain(gw, msg.to_wire(), host, tcp)
    assert reply is not None, "no reply"
    return dns.message.from_wire(reply)


def ede(msg: dns.message.Message) -> tuple[int, str] | None:
    """(INFO-CODE, EXTRA-TEXT) of the reply's EDE option, or None."""
    for opt in msg.options:
        if isinstance(opt, dns.edns.EDEOption):
            return int(opt.code), opt.text or ""
    return None


def sde(msg: dns.message.Message) -> dict[str, Any]:
    """The Structured DNS Error JSON of the reply's EDE EXTRA-TEXT."""
    found = ede(msg)
    assert found is not None, "no EDE option"
    return json.loads(found[1]) if found[1] else {}
