"""One zone's current version and its differences to recent serials, for IXFR (RFC 1995).

A difference maps each owner whose policy changed to (policy before, policy after),
``ABSENT`` standing for no trigger. Differences between consecutive serials are kept,
newest last, up to ``limit`` of them and no more owners in all than the zone holds
(past that a full transfer is smaller anyway); a secondary whose serial is not among
them gets a full transfer, whether it is too far behind or asks for a serial we never
served (one from the future, after a store was rebuilt).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from clearwall.xfr.zones import ABSENT, Absent, Policy, State, Zone

__all__ = ["ABSENT", "Absent", "State", "ZoneHistory", "difference", "serial_of"]

SERIAL_MODULO = 1 << 32  # SOA serials are 32-bit (RFC 1982)


Diff = Mapping[str, tuple[State, State]]


def serial_of(tree_size: int) -> int:
    """The SOA serial of a tree size: the size itself (modulo 2^32, RFC 1982)."""
    return tree_size % SERIAL_MODULO


def difference(
    old: Mapping[str, Policy], new: Mapping[str, Policy]
) -> dict[str, tuple[State, State]]:
    """Every owner whose policy differs between ``old`` and ``new``."""
    diff: dict[str, tuple[State, State]] = {}
    for owner, policy in old.items():
        after: State = new.get(owner, ABSENT)
        if after is ABSENT or after != policy:
            diff[owner] = (policy, after)
    for owner, policy in new.items():
        if owner not in old:
            diff[owner] = (ABSENT, policy)
    return diff


@dataclass(frozen=True)
class Step:
    """The difference from one serial to the next."""

    serial: int  # the serial before
    diff: Diff


class ZoneHistory:
    """A zone's current version (zone content and serial) and its recent steps."""

    def __init__(self, zone: Zone, serial: int, limit: int = 64) -> None:
        """Start at ``zone`` with ``serial``, keeping at most ``limit`` steps."""
        self.zone = zone
        self.serial = serial
        self.limit = limit
        self._steps: deque[Step] = deque()
        self._owners = 0  # owners in all kept steps

    def update(self, zone: Zone, serial: int, diff: Diff | None = None) -> Diff:
        """Make ``zone`` at ``serial`` current; returns what changed (empty when only the
        serial did). ``diff``: the change, when the caller knows it (else it is worked
        out by comparing every owner)."""
        if diff is None:
            diff = difference(self.zone.policies, zone.policies)
        if serial != self.serial:
            self._steps.append(Step(self.serial, diff))
            self._owners += len(diff)
            bound = max(len(zone.policies), 1000)
            while self._steps and (len(self._steps) > self.limit or self._owners > bound):
                self._owners -= len(self._steps.popleft().diff)
        self.zone, self.serial = zone, serial
        return diff

    def serials(self) -> list[int]:
        """The serials an IXFR can start from (oldest first), the current one last."""
        return [s.serial for s in self._steps] + [self.serial]

    def since(self, serial: int) -> dict[str, tuple[State, State]] | None:
        """The condensed difference from ``serial`` to the current version (empty when it
        is current), or None when ``serial`` is not kept: a full transfer is needed."""
        if serial == self.serial:
            return {}
        steps = list(self._steps)
        start = next((i for i, s in enumerate(steps) if s.serial == serial), None)
        if start is None:
            return None
        net: dict[str, tuple[State, State]] = {}
        for step in steps[start:]:
            for owner, (before, after) in step.diff.items():
                first = net[owner][0] if owner in net else before
                net[owner] = (first, after)
        return {o: (b, a) for o, (b, a) in net.items() if b != a}
