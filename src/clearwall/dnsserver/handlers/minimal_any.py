"""Minimal ANY: answer QTYPE=ANY with one synthesized HINFO "RFC8482" (RFC 8482 section 4.2).

ANY is the favourite query of amplification attacks; forwarding it would return the
largest answers upstream has.
"""

from __future__ import annotations

from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import MINIMAL_ANY
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services


class MinimalAny:
    """Answers ANY itself; passes every other type on."""

    def __init__(self, next_handler: Handler) -> None:
        self.next = next_handler

    def __call__(self, ctx: Context) -> Result:
        """Short-circuit ANY."""
        if ctx.q.qtype == wire.TYPE_ANY:
            return MINIMAL_ANY
        return self.next(ctx)


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on."""
    assert next_handler is not None
    return MinimalAny(next_handler)
