"""Per-name proofs: is a name blocked for a jurisdiction's clients, provably from the log?

A bundle is self-contained JSON. It holds the signed checkpoint; for every order in force
in the jurisdiction, that order's latest log entry (published or amended, which carries
the current rule-set digest) with its RFC 6962 inclusion proof; and, for every selector
that could match the name (``exact``/``subtree`` of the name, ``subtree`` of each
ancestor, ``wildcard`` of each strict ancestor, and the ``allow-`` kinds of each), either
the rule line holding it with its inclusion proof in the order's rule-set tree
(membership) or the two adjacent sorted lines around where it would be (non-membership;
one side is absent at either end of the set). The verifier recomputes the decision with
the matcher's precedence (``policy.reference``): most specific rule wins, an exception
wins over a block of the same or lower specificity.

Pure: building needs the entries, rule lines and hash readers handed in; verifying needs
only the bundle and the verifier key.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from clearwall.errors import InvalidName, VerificationError
from clearwall.ledger import entries, proofs
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.entries import EntryError
from clearwall.ledger.logstate import LogState
from clearwall.ledger.merkle import MemoryTree, leaf_hash
from clearwall.ledger.proofs import HashReader
from clearwall.ledger.signing import Verifier
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.policy.names import normalize_name
from clearwall.policy.reference import name_specificity

FORMAT = "clearwall-name-proof/v1"


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise VerificationError(f"{what}: expected a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{what}: invalid base64") from exc
    if len(raw) != 32:
        raise VerificationError(f"{what}: a hash is 32 bytes")
    return raw


def ancestors(name: str) -> list[str]:
    """``name`` and every ancestor down to the top-level label, most specific first."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def selectors(name: str) -> list[str]:
    """Every ``<kind> <value>`` selector that could match ``name``, in a fixed order."""
    out: list[str] = []
    names = ancestors(name)
    for block, allow in (
        (RuleKind.EXACT, RuleKind.ALLOW_EXACT),
        (RuleKind.SUBTREE, RuleKind.ALLOW_SUBTREE),
        (RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD),
    ):
        if block is RuleKind.EXACT:
            values = names[:1]
        elif block is RuleKind.SUBTREE:
            values = names
        else:
            values = names[1:]
        for kind in (block, allow):
            out.extend(f"{kind.value} {v}" for v in values)
    return out


def _in_range(line: bytes, selector: bytes) -> bool:
    """True when a canonical line states ``selector`` (bare, or with an action after a space).

    All such lines sort in ``[selector, selector + "!")`` because a space is the smallest
    byte a canonical line can continue with (``entries.rule_line``).
    """
    return line == selector or line.startswith(selector + b" ")


def specificity(kind: RuleKind, value: str, name: str) -> int | None:
    """The matcher's specificity of a name rule: the one definition in ``policy.reference``."""
    return name_specificity(RuleSpec(kind, value), name)


def _parse_time(text: Any) -> dt.datetime | None:
    if text is None:
        return None
    value = dt.datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


RuleTreeSource = Callable[[int, str], tuple[Sequence[bytes], HashReader]]
"""``(order id, digest hex) -> (sorted rule lines, a hash reader over their tree)``."""


def rule_tree(lines: Sequence[bytes]) -> tuple[Sequence[bytes], MemoryTree]:
    """A rule-set tree over sorted canonical lines, for a ``RuleTreeSource``."""
    return lines, MemoryTree(b"".join(leaf_hash(x) for x in lines))


def _leaf(lines: Sequence[bytes], reader: HashReader, i: int) -> dict[str, Any]:
    proof = proofs.inclusion_proof(reader, i, len(lines))
    return {"index": i, "line": lines[i].decode("ascii"), "inclusion": [_b64(h) for h in proof]}


def prove_name(
    name: str,
    jurisdiction: str,
    checkpoint_note: str,
    checkpoint: Checkpoint,
    state: LogState,
    log_reader: HashReader,
    entry_data: Callable[[int], bytes],
    rule_trees: RuleTreeSource,
    at: dt.datetime,
) -> dict[str, Any]:
    """Build the proof bundle for ``name`` as seen by ``jurisdiction``'s clients at ``at``."""
    qname = normalize_name(name)
    jur = jurisdiction.strip().lower()
    if state.size != checkpoint.size:
        raise VerificationError(
            f"log state has {state.size} entries but the checkpoint is of size {checkpoint.size}"
        )
    orders_out: list[dict[str, Any]] = []
    sels = selectors(qname)
    for index, version in state.in_force(jur, at):
        order_id = version.order.id
        digest, count = version.rules.digest, version.rules.count
        lines, reader = rule_trees(order_id, digest)
        if len(lines) != count:
            raise VerificationError(
                f"order {order_id}: rule file has {len(lines)} lines, not {count}"
            )
        candidates = []
        for sel in sels:
            key = sel.encode("ascii")
            p = bisect.bisect_left(lines, key)
            if p < len(lines) and _in_range(lines[p], key):
                candidates.append({"selector": sel, "present": True, **_leaf(lines, reader, p)})
            else:
                candidates.append(
                    {
                        "selector": sel,
                        "present": False,
                        "left": _leaf(lines, reader, p - 1) if p > 0 else None,
                        "right": _leaf(lines, reader, p) if p < len(lines) else None,
                    }
                )
        data = entry_data(index)
        orders_out.append(
            {
                "order": order_id,
                "entry": {
                    "index": index,
                    "data": data.decode("utf-8"),
                    "inclusion": [
                        _b64(h) for h in proofs.inclusion_proof(log_reader, index, checkpoint.size)
                    ],
                },
                "candidates": candidates,
            }
        )
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "name": qname,
        "jurisdiction": jur,
        "at": at.astimezone(dt.UTC).isoformat(),
        "checkpoint": checkpoint_note,
        "orders": orders_out,
    }
    bundle["conclusion"] = conclude(qname, _matches(bundle))
    return bundle


def _matches(bundle: Mapping[str, Any]) -> list[tuple[int, int, RuleKind, str]]:
    """(specificity, order id, kind, line) of every present selector in the bundle."""
    out = []
    name = bundle["name"]
    for order in bundle["orders"]:
        for cand in order["candidates"]:
            if cand["present"]:
                kind_text, value = cand["selector"].split(" ", 1)
                kind = RuleKind(kind_text)
                spec = specificity(kind, value, name)
                if spec is not None:
                    out.append((spec, int(order["order"]), kind, cand["line"]))
    return out


def conclude(name: str, matches: Sequence[tuple[int, int, RuleKind, str]]) -> dict[str, Any]:
    """The decision the matching rules imply (the matcher's precedence, see module doc)."""
    blocks = [m for m in matches if not m[2].is_allow]
    allows = [m for m in matches if m[2].is_allow]
    best_block = max((m[0] for m in blocks), default=-1)
    best_allow = max((m[0] for m in allows), default=-1)
    if not blocks:
        return {"decision": "allow", "blocked_by": [], "allowed_by": []}
    if best_allow >= best_block:
        cited = sorted({m[1] for m in allows if m[0] >= best_block})
        return {"decision": "allow", "blocked_by": [], "allowed_by": cited}
    cited = sorted({m[1] for m in blocks if m[0] > best_allow})
    return {"decision": "block", "blocked_by": cited, "allowed_by": []}


# -- verification ----------------------------------------------------------------------


def _check_leaf(leaf: Any, size: int, root: bytes, what: str) -> bytes:
    if not isinstance(leaf, dict):
        raise VerificationError(f"{what}: missing")
    try:
        index, line = int(leaf["index"]), str(leaf["line"]).encode("ascii")
        proof = [_unb64(h, what) for h in leaf["inclusion"]]
    except (KeyError, TypeError, ValueError, UnicodeError) as exc:
        raise VerificationError(f"{what}: malformed leaf") from exc
    try:
        proofs.verify_inclusion(index, size, leaf_hash(line), proof, root)
    except VerificationError as exc:
        raise VerificationError(f"{what}: {exc}") from exc
    return line


def _check_complete(
    bundle: Mapping[str, Any],
    cp: Checkpoint,
    jurisdiction: str,
    at: dt.datetime,
    log_entries: Iterable[tuple[int, bytes]],
) -> None:
    """The bundle lists every order binding ``jurisdiction``, by its latest entry."""
    state = LogState()
    packed = bytearray()
    items = list(log_entries)[: cp.size]  # the log may have grown since the bundle
    for _, data in items:
        packed += leaf_hash(data)
    state.extend(items)
    if state.size != cp.size or MemoryTree(packed).root() != cp.root:
        raise VerificationError("the log entries given do not hash to the checkpoint's root")
    want = {v.order.id: i for i, v in state.in_force(jurisdiction, at)}
    got = {int(o["order"]): int(o["entry"]["index"]) for o in bundle["orders"]}
    for oid, index in want.items():
        if oid not in got:
            raise VerificationError(f"order {oid} binds {jurisdiction} but is missing")
        if got[oid] != index:
            raise VerificationError(f"order {oid}: entry {got[oid]} is not its latest ({index})")
    for oid in got.keys() - want.keys():
        raise VerificationError(f"order {oid} does not bind {jurisdiction} on the log")


def _verify_candidate(cand: Mapping[str, Any], count: int, root: bytes, what: str) -> None:
    """Check one selector's membership or non-membership proof in a rule-set tree."""
    key = str(cand["selector"]).encode("ascii")
    if cand["present"]:
        line = _check_leaf(cand, count, root, what)
        if not _in_range(line, key):
            raise VerificationError(f"{what}: proven line {line!r} is another rule")
        return
    left: Any = cand.get("left")
    right: Any = cand.get("right")
    if left is None and right is None:
        if count != 0:
            raise VerificationError(f"{what}: non-membership proof has no leaves")
        return
    if left is not None:
        if not _check_leaf(left, count, root, what + " left") < key:
            raise VerificationError(f"{what}: left neighbour does not sort before the selector")
    elif int(right["index"]) != 0:
        raise VerificationError(f"{what}: no left neighbour but the right one is not first")
    if right is not None:
        if not _check_leaf(right, count, root, what + " right") >= key + b"!":
            raise VerificationError(f"{what}: right neighbour does not sort after the selector")
    elif int(left["index"]) != count - 1:
        raise VerificationError(f"{what}: no right neighbour but the left one is not last")
    if left is not None and right is not None and int(right["index"]) != int(left["index"]) + 1:
        raise VerificationError(f"{what}: the two neighbours are not adjacent")


def verify_bundle(
    bundle: Mapping[str, Any],
    verifier: Verifier,
    log_entries: Iterable[tuple[int, bytes]] | None = None,
) -> dict[str, Any]:
    """Check a bundle completely; return its conclusion, or raise VerificationError.

    Checks: the checkpoint signature; each order entry's inclusion in the checkpoint's
    tree; that each entry publishes the order it is listed for and binds the bundle's
    jurisdiction at its time; that exactly the expected selectors are answered; each
    membership and non-membership proof against the entry's rule-set digest; and that the
    stated conclusion is what the proven rules imply.

    A bundle alone cannot show that no binding order was left out. Given the log's
    entries (``log_entries``: every ``(index, data)`` of the checkpoint's tree, e.g. read
    from the public entry bundles), their root is checked against the checkpoint and the
    bundle must list exactly the orders that bind the jurisdiction, each by its latest
    entry.
    """
    try:
        if bundle.get("format") != FORMAT:
            raise VerificationError(f"not a {FORMAT} bundle")
        name = normalize_name(str(bundle["name"]))
        if name != bundle["name"]:
            raise VerificationError("bundle name is not in canonical form")
        jurisdiction = str(bundle["jurisdiction"])
        at = _parse_time(bundle["at"])
        assert at is not None
        cp = open_checkpoint(str(bundle["checkpoint"]), verifier)
        expected = selectors(name)
        seen_orders: set[int] = set()
        for order in bundle["orders"]:
            order_id = int(order["order"])
            what = f"order {order_id}"
            if order_id in seen_orders:
                raise VerificationError(f"{what} appears twice")
            seen_orders.add(order_id)
            entry = order["entry"]
            index, data = int(entry["index"]), str(entry["data"]).encode("utf-8")
            try:
                proofs.verify_entry_inclusion(
                    index, cp.size, data, [_unb64(h, what) for h in entry["inclusion"]], cp.root
                )
            except VerificationError as exc:
                raise VerificationError(f"{what}: log entry {index}: {exc}") from exc
            try:
                event = entries.parse(data)
            except EntryError as exc:
                raise VerificationError(f"{what}: log entry {index}: {exc}") from exc
            if not isinstance(event, entries.OrderVersion):
                raise VerificationError(f"{what}: log entry {index} does not publish an order")
            if event.order.id != order_id:
                raise VerificationError(f"{what}: log entry {index} is about another order")
            if not event.binds(jurisdiction, at):
                raise VerificationError(
                    f"{what}: does not bind jurisdiction {jurisdiction!r} at {bundle['at']}"
                )
            count, root = event.rules.count, bytes.fromhex(event.rules.digest)
            cands = order["candidates"]
            if [c["selector"] for c in cands] != expected:
                raise VerificationError(f"{what}: selectors answered are not the expected set")
            for cand in cands:
                _verify_candidate(cand, count, root, f"{what}, {cand['selector']!r}")
        if log_entries is not None:
            _check_complete(bundle, cp, jurisdiction, at, log_entries)
        conclusion = conclude(name, _matches(bundle))
    except VerificationError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError, InvalidName) as exc:
        raise VerificationError(f"malformed proof bundle: {exc!r}") from exc
    if conclusion != bundle.get("conclusion"):
        raise VerificationError(
            f"the bundle concludes {bundle.get('conclusion')} but its proofs imply {conclusion}"
        )
    return conclusion
