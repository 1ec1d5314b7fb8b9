"""Turns orders and their rules into the compact tables a ``PolicySnapshot`` serves from.

The compiler streams: each rule becomes one trie key (the name reversed, with a trailing
dot) and one integer code, buffered in a bytes blob and an integer array rather than as
Python objects, so that ten million rules compile in bounded memory. Rules of the same
name are merged into a *rule group*; groups are deduplicated, so the per-name state is a
single 32-bit group id in an array parallel to the trie's key ids. The same keys also
make the name index (``_nameindex``): sorted keyed fingerprints the matcher asks first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import math
import os
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import marisa_trie

from clearwall.errors import SnapshotError
from clearwall.model import Action, OrderRef, OrderStatus, RuleKind
from clearwall.policy import _nameindex
from clearwall.policy.keytable import KIND as KEYTABLE
from clearwall.policy.keytable import KeyTableNames
from clearwall.policy.model import CompiledOrder, Jurisdiction, RuleRows

# 2: the name index (names.fp64 and its key in the metadata) joined the trie.
# 3: key-group ids take 1, 2 or 4 bytes by how many groups there are ("group_width");
#    the name index keeps 32 bits per fingerprint.
FORMAT_VERSION = 3

# Rule codes pack (order index, kind, action override) into one int: the low 3 bits are
# the action (0 = the order's own), the next 3 the kind, the rest the order index.
KINDS: tuple[RuleKind, ...] = tuple(RuleKind)
ACTIONS: tuple[Action | None, ...] = (None, *Action)
_KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}
_ACTION_INDEX = {action: i for i, action in enumerate(ACTIONS)}
ACTION_BITS = 3
KIND_BITS = 3
ORDER_SHIFT = ACTION_BITS + KIND_BITS
MAX_ORDERS = (1 << (64 - ORDER_SHIFT)) - 1

# How often (in rules) the progress callback is told how far the build has come.
PROGRESS_EVERY = 1 << 16


def encode_rule(order_index: int, kind: RuleKind, action: Action | None) -> int:
    """Pack one rule's order index, kind and action override into a rule code."""
    return (order_index << ORDER_SHIFT) | (_KIND_INDEX[kind] << ACTION_BITS) | _ACTION_INDEX[action]


def decode_rule(code: int) -> tuple[int, RuleKind, Action | None]:
    """Unpack a rule code into (order index, kind, action override)."""
    return (
        code >> ORDER_SHIFT,
        KINDS[(code >> ACTION_BITS) & ((1 << KIND_BITS) - 1)],
        ACTIONS[code & ((1 << ACTION_BITS) - 1)],
    )


def name_key(name: str) -> str:
    """The trie key of a canonical name: reversed, with a trailing dot.

    ``example.com`` becomes ``moc.elpmaxe.``; every key that is a prefix of a query's key
    then ends on a label boundary, so a prefix search yields exactly the listed ancestors.
    """
    return ("." + name)[::-1]


def key_name(key: str) -> str:
    """The canonical name of a trie key (inverse of ``name_key``)."""
    return key[::-1][1:]


def epoch(moment: dt.datetime) -> float:
    """Seconds since the epoch of a datetime; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


@dataclass(slots=True)
class OrderEntry:
    """An order as the snapshot carries it: its citation and its force window."""

    ref: OrderRef
    start: float
    end: float  # math.inf when the order has no sunset


Names: TypeAlias = marisa_trie.Trie | KeyTableNames
"""Where a snapshot keeps its listed names (trie keys and their ids): marisa's trie, or,
for a whole compile the gateway waits for, a key table (``policy.keytable``)."""

MARISA = "marisa"
"""The snapshot metadata's ``names`` value for names kept in a marisa trie."""


def names_kind(names: Names) -> str:
    """The metadata's ``names`` value for ``names``: ``MARISA`` or ``KEYTABLE``."""
    return KEYTABLE if isinstance(names, KeyTableNames) else MARISA


@dataclass(slots=True)
class Tables:
    """Everything a snapshot serves from, as built in memory or read back from disk."""

    trie: Names
    key_groups: Any  # array or memoryview of unsigned ints (see narrowest): key id -> group id
    groups: list[tuple[int, ...]]  # group id -> sorted rule codes; group 0 is empty
    orders: list[OrderEntry]
    jurisdictions: list[Jurisdiction]
    ip_rules: list[tuple[str, int]]  # (canonical CIDR, rule code)
    tree_size: int
    base_url: str
    compiled_at: float
    valid_until: float | None
    index_image: Any  # the name index (bytes, or an mmap of names.fp32)
    index_key: bytes  # the random SipHash key of its fingerprints
    version: str = ""
    keepalive: list[Any] = field(default_factory=list)  # mmaps the views depend on


def ref_to_json(ref: OrderRef) -> dict[str, Any]:
    """A JSON-ready dict of an order reference."""
    return {
        "id": ref.id,
        "jurisdiction": ref.jurisdiction,
        "authority": ref.authority,
        "authority_kind": ref.authority_kind.value,
        "category": ref.category.value,
        "action": ref.action.value,
        "title": ref.title,
        "legal_basis": ref.legal_basis,
        "reference": ref.reference,
        "contacts": list(ref.contacts),
        "url": ref.url,
    }


def ref_from_json(data: dict[str, Any]) -> OrderRef:
    """The order reference a ``ref_to_json`` dict describes."""
    from clearwall.model import AuthorityKind, Category

    return OrderRef(
        id=int(data["id"]),
        jurisdiction=str(data["jurisdiction"]),
        authority=str(data["authority"]),
        authority_kind=AuthorityKind(data["authority_kind"]),
        category=Category(data["category"]),
        action=Action(data["action"]),
        title=str(data["title"]),
        legal_basis=str(data["legal_basis"]),
        reference=str(data["reference"]),
        contacts=tuple(str(c) for c in data["contacts"]),
        url=str(data["url"]),
    )


def next_boundary(orders: Iterable[OrderEntry], now: float) -> float | None:
    """The first effective-from or expiry instant after ``now``, or None if none is left."""
    later = [t for o in orders for t in (o.start, o.end) if now < t < math.inf]
    return min(later) if later else None


def _iter_blob(blob: bytearray, chunk: int = 1 << 20) -> Iterator[str]:
    """The newline-separated keys of a blob, decoded and split a chunk (of about
    ``chunk`` bytes, ending on a newline) at a time: in C, and in bounded memory."""
    start, size = 0, len(blob)
    while start < size:
        end = blob.rfind(b"\n", start, start + chunk)
        if end < 0:  # one key longer than a chunk (names are at most 255 octets)
            end = blob.find(b"\n", start)
            if end < 0:
                return
        yield from blob[start:end].decode().split("\n")
        start = end + 1


class _GroupTable:
    """Interns rule groups (sorted tuples of rule codes) to small integer ids."""

    def __init__(self) -> None:
        self.groups: list[tuple[int, ...]] = [()]
        self._ids: dict[tuple[int, ...], int] = {(): 0}
        self._added: dict[tuple[int, int], int] = {}

    def add(self, group: int, code: int) -> int:
        """The id of ``group`` with ``code`` added to it."""
        step = (group, code)
        found = self._added.get(step)
        if found is not None:
            return found
        codes = self.groups[group]
        merged = codes if code in codes else tuple(sorted((*codes, code)))
        gid = self._ids.get(merged)
        if gid is None:
            gid = len(self.groups)
            self.groups.append(merged)
            self._ids[merged] = gid
        self._added[step] = gid
        return gid


_IP_KINDS = frozenset(kind.value for kind in RuleKind if kind.is_ip)


def _add_rows(
    rules: RuleRows,
    index: int,
    order_id: int,
    blob: bytearray,
    codes: array[int],
    ip_rules: list[tuple[str, int]],
) -> int:
    """What ``build``'s loop does for each rule, over the store's text rows at once: the
    trie keys onto ``blob``, the rule codes onto ``codes``, CIDRs onto ``ip_rules``.
    Returns how many rules there were.

    The names are checked and turned into keys as one string (the names reversed in
    order, joined, the whole reversed back: each key is ``name_key``'s, in the rows'
    order) rather than a Python step per name: a million rules in about a third of the
    time. ``_add_rows_reference`` is the per-name form it equals.

    An order read as one text (``RuleRows.of_text``) goes to ``_add_text``."""
    if rules.text is not None:
        return _add_text(rules, index, order_id, blob, codes)
    rows = rules.rows
    code_of: dict[tuple[str, str | None], int] = {}
    if len(rules.actions) == 1:  # every (kind, action) pair there is, without a pass
        pairs = {(kind, action) for kind in rules.kinds for action in rules.actions}
    else:
        pairs = {(row[0], row[2]) for row in rows}
    for kind, action in pairs:
        code_of[(kind, action)] = encode_rule(
            index, RuleKind(kind), Action(action) if action else None
        )
    if any(kind in _IP_KINDS for kind, _action in code_of):
        return _add_rows_reference(rules, index, order_id, blob, codes, ip_rules)
    names = [row[1] for row in rows]
    if not names:
        return 0
    _append_keys(names, "\n".join(names), order_id, blob)
    if len(code_of) == 1:
        codes.extend(array("Q", [next(iter(code_of.values()))]) * len(names))
    else:
        codes.extend(code_of[(k, a)] for k, _v, a in rows)
    return len(rows)


def _add_text(
    rules: RuleRows, index: int, order_id: int, blob: bytearray, codes: array[int]
) -> int:
    """``_add_rows`` for an order read as one text: every rule has the same kind (a name
    kind) and action, so one code, and the keys are the text's lines made into keys at
    once (``_add_rows``' string operations over the lines in reverse, split once).

    The keys keep the text's order, which is the rows' order: the trie does not depend on
    it, but ``group_keys_general`` numbers the groups in the order it meets them, so an
    order whose names other orders list too would otherwise give other group ids (the
    same policy under another content hash)."""
    text = rules.text
    assert text is not None
    code = encode_rule(
        index, RuleKind(rules.kind), None if rules.action is None else Action(rules.action)
    )
    _append_keys(text.split("\n"), text, order_id, blob)
    codes.extend(array("Q", [code]) * rules.size)
    return rules.size


def _append_keys(names: list[str], text: str, order_id: int, blob: bytearray) -> None:
    """Check that ``names`` (joined by newlines: ``text``) are canonical and append
    their trie keys to ``blob`` in their order, with string operations over the whole
    text rather than a Python step per name (``names`` is reversed in place).

    A name is canonical here when it is not empty, holds no newline and has no trailing
    dot: the joined text then has exactly one newline between names, no empty line,
    and no dot before a newline or at its end."""
    if (
        not text
        or text.count("\n") != len(names) - 1
        or not names[0]
        or not names[-1]
        or "\n\n" in text
        or ".\n" in text
        or text.endswith(".")
    ):
        bad = next(v for v in names if not v or "\n" in v or v.endswith("."))
        raise SnapshotError(f"order {order_id}: name not canonical: {bad!r}")
    names.reverse()
    blob += ("." + "\n.".join(names))[::-1].encode()
    blob += b"\n"


def _add_rows_reference(
    rules: RuleRows,
    index: int,
    order_id: int,
    blob: bytearray,
    codes: array[int],
    ip_rules: list[tuple[str, int]],
) -> int:
    """``_add_rows`` one name at a time (and the form for orders with CIDR rules)."""
    code_of: dict[tuple[str, str | None], int] = {}
    for kind, action in {(row[0], row[2]) for row in rules.rows}:
        code_of[(kind, action)] = encode_rule(
            index, RuleKind(kind), Action(action) if action else None
        )
    names = []
    for kind, value, action in rules.rows:
        if kind in _IP_KINDS:
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise SnapshotError(f"order {order_id}: bad CIDR {value!r}") from exc
            ip_rules.append((str(network), code_of[(kind, action)]))
            continue
        names.append(value)
    bad = next((v for v in names if not v or "\n" in v or v.endswith(".")), None)
    if bad is not None:
        raise SnapshotError(f"order {order_id}: name not canonical: {bad!r}")
    if names:
        blob += "\n".join([("." + v)[::-1] for v in names]).encode()
        blob += b"\n"
        codes.extend(code_of[(k, a)] for k, _v, a in rules.rows if k not in _IP_KINDS)
    return len(rules.rows)


def group_keys(
    trie: Names, blob: bytearray, codes: array[int]
) -> tuple[array[int], list[tuple[int, ...]]]:
    """The key-group array (key id -> group id, narrowest type) and the groups of the
    keys in ``blob`` (newline-ended, in the order of their rule ``codes``).

    When every rule has the same code (one order whose rules share their kind and
    action: the common big list), every key's group is that one code, so group 1 for
    every key id and no key is looked up: a million ``key_id`` calls (about 0.7 s) saved.
    ``group_keys_general`` is the reference it equals."""
    if codes and codes.count(codes[0]) == len(codes):
        return array("B", b"\x01") * len(trie), [(), (codes[0],)]
    return group_keys_general(trie, blob, codes)


def group_keys_general(
    trie: Names, blob: bytearray, codes: array[int]
) -> tuple[array[int], list[tuple[int, ...]]]:
    """``group_keys`` for any codes: each key looked up, its rule codes merged."""
    table = _GroupTable()
    key_groups = array("I", bytes(4 * len(trie)))
    add = table.add
    # A key table looks every key up in one call; map() over the trie rather than a
    # call per loop turn: a third less over a million keys.
    kids = trie.ids(blob) if isinstance(trie, KeyTableNames) else map(trie.key_id, _iter_blob(blob))
    for kid, code in zip(kids, codes, strict=True):
        key_groups[kid] = add(key_groups[kid], code)
    return narrowest(key_groups, len(table.groups)), table.groups


def build(
    orders: Iterable[CompiledOrder],
    jurisdictions: Iterable[Jurisdiction],
    tree_size: int = 0,
    base_url: str = "",
    progress: Callable[[int], None] | None = None,
    now: float | None = None,
    keytable_from: int | None = None,
) -> Tables:
    """Compile orders into tables. Orders whose status is not active are left out.

    ``CompiledOrder.rules`` is read once and may be any iterable (a generator streams
    without holding one object per rule). ``progress`` is called with the number of rules
    read so far, every ``PROGRESS_EVERY`` rules and once at the end. With
    ``keytable_from``, the names go into a key table rather than a trie when the
    policy has at least that many name rules: a tenth of the time, eight times the size
    (``policy.keytable``); the verdicts are the same.
    """
    entries: list[OrderEntry] = []
    blob = bytearray()
    codes = array("Q")
    ip_rules: list[tuple[str, int]] = []
    count = 0
    for compiled in orders:
        order = compiled.order
        if order.status is not OrderStatus.ACTIVE:
            continue
        index = len(entries)
        if index > MAX_ORDERS:
            raise SnapshotError(f"too many orders for one snapshot ({index})")
        end = math.inf if order.expires is None else epoch(order.expires)
        entries.append(OrderEntry(compiled.ref(base_url), epoch(order.effective_from), end))
        if isinstance(compiled.rules, RuleRows):
            count += _add_rows(compiled.rules, index, order.id, blob, codes, ip_rules)
            if progress is not None:
                progress(count)
            continue
        for rule in compiled.rules:
            count += 1
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(count)
            code = encode_rule(index, rule.kind, rule.action)
            if rule.kind.is_ip:
                try:
                    network = ipaddress.ip_network(rule.value, strict=False)
                except ValueError as exc:
                    raise SnapshotError(f"order {order.id}: bad CIDR {rule.value!r}") from exc
                ip_rules.append((str(network), code))
                continue
            if not rule.value or "\n" in rule.value or rule.value.endswith("."):
                raise SnapshotError(f"order {order.id}: name not canonical: {rule.value!r}")
            blob += name_key(rule.value).encode()
            blob += b"\n"
            codes.append(code)
    if progress is not None:
        progress(count)

    # marisa's default shape (three levels, normal cache). One level with the largest
    # cache made lookups faster but the trie a third larger; since the name index answers
    # every name that is not listed, the trie is read only for listed names the memo has
    # not seen, and its pages count in every data-plane process's memory.
    table = keytable_from is not None and blob and len(codes) >= keytable_from
    trie: Names = KeyTableNames.build(blob) if table else marisa_trie.Trie(_iter_blob(blob))
    key_groups, groups = group_keys(trie, blob, codes)
    del codes
    # A fresh random key per compile: nobody can pick names whose fingerprints collide
    # or crowd one part of the index. The key is policy-independent, so it is left out
    # of the content hash (as is the index, which follows from the names).
    index_key = os.urandom(_nameindex.KEY_SIZE)
    index_image = _nameindex.build(blob, index_key)
    del blob

    moment = time.time() if now is None else now
    tables = Tables(
        trie=trie,
        key_groups=key_groups,
        groups=groups,
        orders=entries,
        jurisdictions=list(jurisdictions),
        ip_rules=sorted(ip_rules),
        tree_size=tree_size,
        base_url=base_url,
        compiled_at=moment,
        valid_until=next_boundary(entries, moment),
        index_image=index_image,
        index_key=index_key,
    )
    tables.version = f"{tree_size}-{content_hash(tables)[:12]}"
    return tables


def metadata(tables: Tables) -> dict[str, Any]:
    """The JSON-ready metadata of a snapshot: all but the trie, the key-group array and
    the name index (whose key it carries)."""
    return {
        "format": FORMAT_VERSION,
        "version": tables.version,
        "tree_size": tables.tree_size,
        "base_url": tables.base_url,
        "compiled_at": tables.compiled_at,
        "valid_until": tables.valid_until,
        "keys": len(tables.trie),
        "names": names_kind(tables.trie),
        "group_width": memoryview(tables.key_groups).itemsize,
        "index_key": tables.index_key.hex(),
        "orders": [
            {
                "ref": ref_to_json(o.ref),
                "start": o.start,
                "end": None if o.end == math.inf else o.end,
            }
            for o in tables.orders
        ],
        "groups": [list(g) for g in tables.groups],
        "jurisdictions": [
            {"code": j.code, "name": j.name, "networks": [str(n) for n in j.networks]}
            for j in tables.jurisdictions
        ],
        "ip_rules": [list(r) for r in tables.ip_rules],
    }


GROUP_TYPECODES: dict[int, Literal["B", "H", "I"]] = {1: "B", 2: "H", 4: "I"}
"""The array typecode of each key-group width in bytes."""


def narrowest(key_groups: array[int], groups: int) -> array[int]:
    """``key_groups`` in the narrowest unsigned type that holds ``groups`` distinct ids.

    Policies have few groups (one per distinct set of orders listing a name), so one
    byte per name is the common case: a quarter of the pages a u32 array keeps resident.
    """
    for width, code in GROUP_TYPECODES.items():
        if groups <= 1 << (8 * width):
            return key_groups if code == key_groups.typecode else array(code, key_groups)
    return key_groups


def content_hash(tables: Tables) -> str:
    """SHA-256 (hex) over the trie, the key-group array and the policy metadata.

    The name index and its random key are left out: they follow from the names.
    """
    meta = metadata(tables)
    for volatile in ("version", "compiled_at", "valid_until", "tree_size", "index_key"):
        meta.pop(volatile)
    digest = hashlib.sha256()
    digest.update(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode())
    digest.update(tables.trie.tobytes())
    digest.update(memoryview(tables.key_groups).cast("B"))
    return digest.hexdigest()
