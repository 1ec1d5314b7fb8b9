"""A registry's public log read over HTTP, verified against what the mirror verified before.

The pure part (``check_update``) takes the held state (the registry's leaf hashes seen
so far and the checkpoint that signed them) and what the registry serves now, and says
whether the new checkpoint extends the held tree (RFC 6962: the held tree's leaves are
a prefix of the new one, recomputed here from every leaf rather than from a proof). The
I/O edge (``RegistryClient``) fetches with ``ledger.remote.LogSource``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from clearwall.errors import ClearwallError, MirrorError, TileError
from clearwall.ledger import entries, tiles
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.cosignature import WitnessPolicy
from clearwall.ledger.merkle import HASH_SIZE, MemoryTree, leaf_hash, merkle_root
from clearwall.ledger.remote import LogSource
from clearwall.ledger.signing import Verifier
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec

UNREACHABLE = "unreachable"
INVALID = "invalid"
REFUSED = "refused"

MAX_CHECKPOINT = 64 * 1024  # a checkpoint note is a few hundred bytes; more is garbage


@dataclass(frozen=True, slots=True)
class Held:
    """What the mirror verified of a registry before: its origin, the leaf hashes of
    every entry up to the held size (concatenated), and the checkpoint that signed them."""

    origin: str | None
    leaves: bytes = b""
    note: str = ""

    @property
    def size(self) -> int:
        """How many registry entries were verified."""
        return len(self.leaves) // HASH_SIZE


@dataclass
class Update:
    """A verified new state of the registry: its signed checkpoint, and the entries past
    the held size (index, data) with their leaf hashes."""

    note: str
    checkpoint: Checkpoint
    new: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def leaves(self) -> bytes:
        """The leaf hashes of the new entries, concatenated."""
        return b"".join(leaf_hash(d) for _, d in self.new)


def open_note(
    note: str, verifier: Verifier, held: Held, policy: WitnessPolicy | None
) -> Checkpoint:
    """The checkpoint of ``note`` if the registry's key signed it for the held origin
    (and the witness quorum cosigned it); MirrorError ``invalid`` saying why not."""
    try:
        cp = open_checkpoint(note, verifier, held.origin)
        if policy is not None and policy.witnesses:
            policy.require(note, verifier, int(time.time()))
    except ClearwallError as exc:
        raise MirrorError(INVALID, f"checkpoint rejected: {exc}") from exc
    return cp


def check_update(held: Held, note: str, cp: Checkpoint, new: list[bytes]) -> Update:
    """Whether ``cp`` (already signature-checked) extends the held tree with ``new`` (the
    entries from the held size on); MirrorError ``refused`` when the registry signed a
    tree that contradicts the held one, ``invalid`` when the entries served do not hash to
    the signed root."""
    tree = MemoryTree(held.leaves)
    if cp.size < held.size:
        # A stale cache may serve an older checkpoint: fine if it is a prefix of ours.
        if tree.root(cp.size) != cp.root:
            raise MirrorError(
                REFUSED,
                f"the registry signed size {cp.size} with a root that is not the root of "
                f"the first {cp.size} entries verified before: its log was rewritten",
                note,
            )
        return Update(note, cp)
    if cp.size == held.size:
        if held.size and tree.root() != cp.root:
            raise MirrorError(
                REFUSED,
                f"the registry signed two different trees of size {cp.size}: a fork",
                note,
            )
        return Update(note, cp)
    if len(new) != cp.size - held.size:
        raise MirrorError(INVALID, f"served {len(new)} new entries, expected {cp.size - held.size}")
    tree.append(b"".join(leaf_hash(d) for d in new))
    if tree.root() != cp.root:
        raise MirrorError(
            INVALID, f"the entries served do not hash to the signed root of size {cp.size}"
        )
    return Update(note, cp, [(held.size + i, d) for i, d in enumerate(new)])


def parse_rule_lines(data: bytes, digest: str, count: int, where: str) -> list[RuleSpec]:
    """The rules of a published rule file, after checking that its lines are sorted,
    distinct, ``count`` many and hash to ``digest``; MirrorError ``invalid`` if not."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) != count or lines != sorted(set(lines)) or merkle_root(lines).hex() != digest:
        raise MirrorError(INVALID, f"{where} does not hash to the logged digest {digest}")
    rules: list[RuleSpec] = []
    for line in lines:
        parts = line.decode("ascii", "replace").split(" ")
        try:
            kind = RuleKind(parts[0])
            action = Action(parts[2]) if len(parts) == 3 else None
            if len(parts) not in (2, 3):
                raise ValueError(line)
        except ValueError as exc:
            raise MirrorError(INVALID, f"{where}: not a rule line: {line!r}") from exc
        rules.append(RuleSpec(kind, parts[1], action))
    if entries.rules_digest(rules)[0] != digest:  # the parse lost nothing
        raise MirrorError(INVALID, f"{where}: rule lines do not round-trip")
    return rules


class RegistryClient:
    """Fetches one registry's ``/log/`` files (checkpoint, entry bundles, rule files)."""

    def __init__(self, url: str, verifier: Verifier, policy: WitnessPolicy | None = None) -> None:
        """``url`` is the registry's base URL (its ``/log`` prefix is added)."""
        base = url.rstrip("/")
        base = base[: -len("/log")] if base.endswith("/log") else base
        self.url = base
        self.verifier = verifier
        self.policy = policy
        self.source = LogSource(f"{base}/log")

    def _get(self, path: str) -> bytes:
        try:
            return self.source.get(path)
        except TileError as exc:  # an HTTP status: the registry answered, wrongly
            raise MirrorError(INVALID, f"{self.url}/log/{path}: {exc}") from exc
        except ClearwallError as exc:
            raise MirrorError(UNREACHABLE, str(exc)) from exc

    def checkpoint(self, origin: str | None) -> tuple[str, Checkpoint]:
        """The registry's latest checkpoint note, verified (signature, origin, quorum)."""
        raw = self._get("checkpoint")
        if len(raw) > MAX_CHECKPOINT:
            raise MirrorError(INVALID, f"checkpoint of {len(raw)} bytes is garbage")
        note = raw.decode("utf-8", "replace")
        return note, open_note(note, self.verifier, Held(origin), self.policy)

    def update(self, held: Held, fetched: tuple[str, Checkpoint] | None = None) -> Update:
        """The registry's new verified state past ``held`` (see ``check_update``), from
        the checkpoint ``fetched`` already (default: fetched now)."""
        note, cp = fetched if fetched is not None else self.checkpoint(held.origin)
        new: list[bytes] = []
        if cp.size > held.size:
            new = self.entries(held.size, cp.size)
        try:
            return check_update(held, note, cp, new)
        except MirrorError as exc:
            if exc.status != INVALID or held.size == 0 or cp.size <= held.size:
                raise
            # Entries that do not fit the held prefix: if the registry's whole log hashes
            # to the signed root, the registry signed a rewritten history (evidence).
            if MemoryTree.from_entries(self.entries(0, cp.size)).root() == cp.root:
                raise MirrorError(
                    REFUSED,
                    f"the registry signed size {cp.size} over a log whose first {held.size} "
                    "entries are not the ones verified before: its log was rewritten",
                    note,
                ) from exc
            raise

    def entries(self, start: int, end: int) -> list[bytes]:
        """The registry's entries ``start <= index < end`` from its entry bundles."""
        out: list[bytes] = []
        for n in range(start // tiles.TILE_WIDTH, (end + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
            tile = tiles.tile_for(end, tiles.ENTRIES, n)
            try:
                bundle = tiles.decode_bundle(self.source.tile(tile), tile.width)
            except TileError as exc:
                raise MirrorError(INVALID, f"entry bundle {tile.path}: {exc}") from exc
            except ClearwallError as exc:
                raise MirrorError(UNREACHABLE, str(exc)) from exc
            first = n * tiles.TILE_WIDTH
            out.extend(bundle[max(0, start - first) : end - first])
        return out

    def rules(self, order_id: int, digest: str, count: int) -> list[RuleSpec]:
        """An order version's rules from the registry's rule file, checked against the
        logged digest and count."""
        path = f"rules/{order_id}-{digest}.txt"
        return parse_rule_lines(self._get(path), digest, count, f"{self.url}/log/{path}")

    def close(self) -> None:
        """Close the HTTP connections."""
        client = self.source._client
        if client is not None:
            client.close()
