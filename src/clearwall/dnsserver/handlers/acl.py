"""ACL: answer loopback, every jurisdiction's client networks and ``[dns] allow_networks``.

Anyone else gets REFUSED with EDE 18 Prohibited (RFC 8914 section 4.19): no open
resolver. A jurisdiction's networks come from the policy in force (the log commits
them), so a jurisdiction created or given a network is served from the swap that brings
it, without a restart. The decision per client address is memoized in a bounded dict,
emptied on every swap, so the hot path costs one lookup.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TypedDict

from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastStep, Handler, Result, Services
from clearwall.dnsserver.policyholder import PolicyHolder, PolicyView

_MEMO_MAX = 65_536
REFUSAL = Answer(AnswerKind.REFUSED, reason="client not in allowed networks")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class ACLFields(TypedDict):
    """The fused C paths' ACL argument (``FusedPath``, ``MissPath``)."""

    acl_memo: dict[str, bool]


@dataclass(frozen=True)
class ACLState:
    """What the ACL's fast steps read, in Python (``ACL.fast``) and in the fused C paths
    (``c_fields``): ``admitted`` maps a client host to whether it is admitted. The
    general path (``ACL.allowed``) fills it; a swap empties it in place, never replacing
    it (the C paths hold it). A host not in it takes the general path."""

    admitted: dict[str, bool] = field(default_factory=dict)

    def c_fields(self) -> ACLFields:
        """The fused C paths' ACL argument (``FusedPath``, ``MissPath``)."""
        return {"acl_memo": self.admitted}


class ACL:
    """Lets allowed clients through to ``next``; refuses the rest."""

    def __init__(
        self,
        networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
        policy: PolicyHolder,
        next_handler: Handler,
    ) -> None:
        self.networks = (*LOOPBACK, *networks)
        self.policy = policy
        self.next = next_handler
        self.fast_state = ACLState()
        policy.on_swap(self._forget)

    def _forget(self, _new: PolicyView) -> None:
        # A swap may add or remove a jurisdiction's networks.
        self.fast_state.admitted.clear()

    def allowed(self, host: str) -> bool:
        """True when ``host`` lies in loopback, a configured network or a jurisdiction's."""
        memo = self.fast_state.admitted
        verdict = memo.get(host)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return False
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            verdict = any(ip in net for net in self.networks)
            if not verdict:
                verdict = self.policy.current.jurisdiction_of(str(ip)) is not None
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[host] = verdict
        return verdict

    def __call__(self, ctx: Context) -> Result:
        """Refuse outsiders; pass the rest on."""
        ok = self.fast_state.admitted.get(ctx.host)
        if ok is None:
            ok = self.allowed(ctx.host)
        if ok:
            return self.next(ctx)
        return REFUSAL

    def fast(self, next_step: FastStep | None) -> FastStep | None:
        """Clients the memo already admits go on; anyone else takes the general path."""
        if next_step is None:
            return None
        memo = self.fast_state.admitted

        def step(data: bytes, key: bytes, host: str, jurisdiction: str) -> Answer | None:
            if memo.get(host):
                return next_step(data, key, host, jurisdiction)
            return None

        return step


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """The ACL is always on: with no jurisdiction and no allow list it admits loopback only."""
    assert next_handler is not None
    return ACL(services.config.allow_networks, services.policy, next_handler)
