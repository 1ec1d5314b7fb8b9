"""A layered policy: a large base snapshot plus a small overlay of the orders changed since.

Compiling a million rules takes seconds, but a policy change touches a few orders. So
a change is first enforced as a layer: the base snapshot, with every order the change
touched *masked* (carried, never applying), under an overlay snapshot compiled from
just the changed orders as they now stand. A name that no overlay rule can match (the
overlay's name index says so, with no false negatives) is decided by the base alone, on
its fast path; any other name is decided from the matching rules of both layers at once
(``snapshot.decide``), so the layered verdict is exactly the one a full compile of the
same policy gives: precedence never depends on which layer a rule came from. The
control plane later compiles the whole policy again and swaps that in.

On disk an overlay is an ordinary snapshot directory with one more file, ``layer.json``,
naming its base (a sibling directory, by name) and the masked order ids.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from clearwall.errors import SnapshotError
from clearwall.model import ALLOWED, OrderRef, Verdict
from clearwall.policy.compiler import OrderEntry
from clearwall.policy.model import RuleSpec
from clearwall.policy.snapshot import (
    MEMO_LIMIT,
    Hit,
    PolicySnapshot,
    decide,
    segment,
)
from clearwall.policy.snapshotfile import saved_meta

LAYER_FILE = "layer.json"

# PolicySnapshot.name_hits or .ip_hits: (value, jurisdiction, now, order offset) -> hits.
HitsOf = Callable[[str, str, float, int], list[Hit]]


class LayeredPolicy:
    """A base ``PolicySnapshot`` with orders masked, under an overlay ``PolicySnapshot``;
    it answers everything a snapshot answers, with the verdicts of the merged policy."""

    def __init__(self, base: PolicySnapshot, overlay: PolicySnapshot) -> None:
        """Layer ``overlay`` over ``base`` (whose ``masked`` orders must be the ones the
        overlay replaces or ends)."""
        self.base = base
        self.overlay = overlay
        self.tree_size: int = overlay.tree_size
        self.version: str = f"{overlay.version}/{base.version}"
        bounds = [b for b in (base.valid_until, overlay.valid_until) if b is not None]
        self.valid_until: float | None = min(bounds) if bounds else None
        # Hits of both layers index this list: the base's orders, then the overlay's.
        self._orders: list[OrderEntry] = [*base.entries, *overlay.entries]
        self._offset = len(base.entries)
        self._bounds = sorted({*base.bounds, *overlay.bounds})
        self._lo, self._hi = math.inf, -math.inf  # the interval the memos hold for
        self._names: dict[tuple[str, str], Verdict] = {}
        self._ips: dict[tuple[str, str], Verdict] = {}

    # -- persistence --------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> LayeredPolicy:
        """Map an overlay directory and the base it names."""
        path = Path(path)
        try:
            with open(path / LAYER_FILE, encoding="utf-8") as src:
                layer = json.load(src)
            base_dir = path.parent / str(layer["base"])
            masked = frozenset(int(i) for i in layer["masked"])
            expected = str(layer["base_version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"cannot load policy overlay {path}: {exc}") from exc
        base = PolicySnapshot.load(base_dir, masked)
        if base.version != expected:
            raise SnapshotError(
                f"{path}: its base {base_dir.name} is version {base.version}, not {expected}"
            )
        return cls(base, PolicySnapshot.load(path))

    # -- the data plane -----------------------------------------------------------------

    def match(self, name: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """The verdict for a canonical name for clients of ``jurisdiction`` at ``now``."""
        if not self.overlay.may_list(name):
            return self.base.match(name, jurisdiction, now)
        hits = (self.base.name_hits, self.overlay.name_hits)
        return self._merged(self._names, hits, name, jurisdiction, now)

    def match_ip(self, address: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """The verdict for an answer address; ValueError when it is not an IP address."""
        if not self.overlay.has_ip_rule(address):
            return self.base.match_ip(address, jurisdiction, now)
        hits = (self.base.ip_hits, self.overlay.ip_hits)
        return self._merged(self._ips, hits, address, jurisdiction, now)

    def _merged(
        self,
        memo: dict[tuple[str, str], Verdict],
        hits_of: tuple[HitsOf, HitsOf],
        value: str,
        jurisdiction: str,
        now: float | None,
    ) -> Verdict:
        """The verdict from both layers' matching rules for ``value``, a name or an
        address (``hits_of``: the base's and the overlay's hit finders for it), memoized
        for the current stretch between order bounds."""
        if now is None:
            now = time.time()
        if not self._lo <= now < self._hi:
            self._enter(now)
        key = (jurisdiction, value)
        verdict = memo.get(key)
        if verdict is None:
            base_hits, overlay_hits = hits_of
            hits = base_hits(value, jurisdiction, now, 0)
            hits += overlay_hits(value, jurisdiction, now, self._offset)
            verdict = decide(hits, self._orders) if hits else ALLOWED
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = verdict
        return verdict

    def _enter(self, now: float) -> None:
        """Forget the memos and find the interval between order bounds that holds ``now``."""
        lo, hi = segment(self._bounds, now)
        self._names.clear()
        self._ips.clear()
        self._lo, self._hi = lo, hi

    def next_change(self, now: float) -> float:
        """The first instant after ``now`` at which an order of either layer takes effect
        or expires; ``math.inf`` if none."""
        return segment(self._bounds, now)[1]

    def jurisdiction_of(self, client_ip: str) -> str | None:
        """The client's jurisdiction, by the networks the overlay was compiled with (the
        newer of the two)."""
        return self.overlay.jurisdiction_of(client_ip)

    # -- inspection and export ----------------------------------------------------------

    def jurisdictions(self) -> tuple[str, ...]:
        """Every jurisdiction code either layer knows."""
        return tuple(sorted({*self.base.jurisdictions(), *self.overlay.jurisdictions()}))

    def orders(self) -> tuple[OrderRef, ...]:
        """The base's unmasked orders, then the overlay's."""
        return (*self.base.orders(), *self.overlay.orders())

    def __len__(self) -> int:
        """Names carrying rules in either layer (a name in both counts twice)."""
        return len(self.base) + len(self.overlay)

    def rules_for(
        self, jurisdiction: str, now: float | None = None
    ) -> Iterator[tuple[RuleSpec, OrderRef]]:
        """Every rule in force for clients of ``jurisdiction``: the base's unmasked
        orders' rules, then the overlay's."""
        moment = time.time() if now is None else now
        yield from self.base.rules_for(jurisdiction, moment)
        yield from self.overlay.rules_for(jurisdiction, moment)


def save_overlay(
    overlay: PolicySnapshot, path: Path, base_dir: Path, masked: frozenset[int]
) -> None:
    """Save ``overlay`` at ``path`` as a layer over the snapshot saved at ``base_dir`` (a
    sibling of ``path``), masking ``masked`` order ids there. ``layer.json`` is written
    with the snapshot's files, before the directory takes its name, so a loader never
    sees an overlay without it."""
    path = Path(path)
    base_dir = Path(base_dir)
    if base_dir.parent.resolve() != path.parent.resolve():
        raise SnapshotError(f"an overlay must sit beside its base: {path} / {base_dir}")
    version = saved_meta(base_dir).get("version")
    if not isinstance(version, str):
        raise SnapshotError(f"{base_dir}: the base snapshot's metadata names no version")
    layer = {"base": base_dir.name, "base_version": version, "masked": sorted(masked)}
    overlay.save(path, extra={LAYER_FILE: json.dumps(layer, separators=(",", ":")).encode()})


def is_overlay(path: Path) -> bool:
    """Whether the snapshot directory at ``path`` is an overlay."""
    return (Path(path) / LAYER_FILE).is_file()


def load(path: Path) -> PolicySnapshot | LayeredPolicy:
    """Load a snapshot directory: a whole snapshot, or an overlay with its base."""
    if is_overlay(path):
        return LayeredPolicy.load(path)
    return PolicySnapshot.load(path)
