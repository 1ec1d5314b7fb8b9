"""Jurisdiction: which jurisdiction's orders apply to this client.

The client address is looked up in the snapshot's jurisdiction networks; unknown
clients get ``[dns] default_jurisdiction``. Memoized per address and snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView

_MEMO_MAX = 65_536


class JurisdictionFields(TypedDict):
    """The fused C paths' jurisdiction argument (``FusedPath``, ``MissPath``)."""

    jurisdiction: dict[str, str]


@dataclass(frozen=True)
class JurisdictionState:
    """What the jurisdiction handler's fast steps read, in Python (``fast``) and in the
    fused C paths (``c_fields``): ``codes`` maps a client host to its jurisdiction code.
    The general path (``ClientJurisdiction.of``) fills it; a swap empties it in place,
    never replacing it (the C paths hold it). A host not in it takes the general path."""

    codes: dict[str, str] = field(default_factory=dict)

    def c_fields(self) -> JurisdictionFields:
        """The fused C paths' jurisdiction argument (``FusedPath``, ``MissPath``)."""
        return {"jurisdiction": self.codes}


class ClientJurisdiction:
    """Sets ``ctx.jurisdiction`` and passes the query on."""

    def __init__(self, policy: PolicyHolder, default: str, next_handler: Handler) -> None:
        self.policy = policy
        self.default = default
        self.next = next_handler
        self.fast_state = JurisdictionState()
        policy.on_swap(self._forget)

    def _forget(self, _new: PolicyView) -> None:
        self.fast_state.codes.clear()

    def of(self, host: str) -> str:
        """The jurisdiction code of a client address."""
        memo = self.fast_state.codes
        code = memo.get(host)
        if code is None:
            try:
                code = self.policy.current.jurisdiction_of(host.split("%", 1)[0])
            except ValueError:
                code = None
            if code is None:
                code = self.default
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[host] = code
        return code

    def __call__(self, ctx: Context) -> Result:
        """Tag the query with its jurisdiction."""
        code = self.fast_state.codes.get(ctx.host)
        ctx.jurisdiction = self.of(ctx.host) if code is None else code
        return self.next(ctx)

    def fast(self, next_step: FastStep | None) -> FastStep | None:
        """Clients whose jurisdiction is memoized go on tagged; others take the general path."""
        if next_step is None:
            return None
        memo = self.fast_state.codes

        def step(data: bytes, key: bytes, host: str, _jurisdiction: str) -> Answer | None:
            code = memo.get(host)
            if code is None:
                return None
            return next_step(data, key, host, code)

        return step


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on: every query belongs to a jurisdiction (possibly "")."""
    assert next_handler is not None
    return ClientJurisdiction(services.policy, services.config.default_jurisdiction, next_handler)
