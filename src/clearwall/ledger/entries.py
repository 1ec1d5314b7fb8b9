"""The log's entries: one typed event per policy change, its canonical JSON, and the parse back.

Anyone can recompute a leaf from public data: an entry is canonical JSON (RFC 8785
style: keys sorted, no insignificant whitespace, UTF-8, no floats), and an order's rules
are committed by the Merkle root (RFC 6962 hashing) over their sorted canonical lines, so
that a list of a million names still fits an entry of well under 64 KiB.

This module is the only one that encodes or decodes entries: ``encode(event)`` gives the
bytes a leaf commits, ``parse(data)`` the event they state (or EntryError saying why
they state none). Every reader of the log works on the events (``logstate`` folds them
into the state of every order and jurisdiction); none reads the JSON itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar, TypeAlias

from clearwall.errors import LedgerError
from clearwall.ledger.merkle import merkle_root, text_root
from clearwall.model import Action, AuthorityKind, Category, OrderStatus
from clearwall.policy.model import (
    ALL_JURISDICTIONS,
    Authority,
    Jurisdiction,
    Order,
    RuleRows,
    RuleSpec,
)

MAX_ENTRY_SIZE = 65535  # tlog-tiles entry bundles use a 16-bit length prefix
DIGEST_HEX = 64  # a rule-set digest: a SHA-256 Merkle root in lowercase hex


class EntryError(LedgerError):
    """Bytes that are not a clearwall log entry (the message says what is wrong)."""


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` canonically: sorted keys, compact separators, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# -- rule sets ---------------------------------------------------------------------------


def rule_line(rule: RuleSpec) -> bytes:
    """The canonical line of one rule inside an order's rule-set tree.

    ``<kind> <value>`` or ``<kind> <value> <action>`` when the rule overrides the order's
    action, e.g. ``b"subtree example.com"``. Lines sort bytewise.
    """
    text = f"{rule.kind.value} {rule.value}"
    if rule.action is not None:
        text += f" {rule.action.value}"
    return text.encode("ascii")


def sorted_rule_lines(rules: Iterable[RuleSpec]) -> list[bytes]:
    """The sorted, de-duplicated canonical lines of a rule set: the leaves of its tree."""
    if isinstance(rules, RuleRows):
        # The store's rows hold the enum values themselves: the same lines, no objects.
        # They come ordered by (kind, value), which is their bytewise order on SQLite
        # (the sort then only checks it) and distinct (UNIQUE(order_id, kind, value)):
        # duplicates are looked for, not hashed into a set.
        lines = [
            (f"{kind} {value}" if action is None else f"{kind} {value} {action}").encode("ascii")
            for kind, value, action in rules.rows
        ]
        lines.sort()
        if any(map(bytes.__eq__, lines, islice(lines, 1, None))):
            lines = sorted(set(lines))
        return lines
    return sorted({rule_line(r) for r in rules})


def rules_digest(rules: Iterable[RuleSpec]) -> tuple[str, int]:
    """Hex Merkle root over the sorted canonical rule lines, and how many there are.

    An order read as one text (``RuleRows.of_text``: one kind, one action) is hashed in C
    from that text, every line being ``<kind> <value>[ <action>]``: a million rules in
    about a third of the time, without a bytes object per line. When its lines are not
    in strictly ascending order (another collation's order, a duplicate) the text gives
    no root and the lines are sorted and de-duplicated here as for any rules."""
    if isinstance(rules, RuleRows) and rules.text is not None:
        suffix = b"" if rules.action is None else f" {rules.action}".encode("ascii")
        root = text_root(rules.text, f"{rules.kind} ".encode("ascii"), suffix)
        if root is not None:
            return root.hex(), len(rules)
    lines = sorted_rule_lines(rules)
    return merkle_root(lines).hex(), len(lines)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """What an entry commits of an order's rules: how many lines, and their Merkle root."""

    count: int
    digest: str  # lowercase hex

    @classmethod
    def of(cls, rules: Iterable[RuleSpec]) -> RuleSet:
        """The rule set of ``rules`` (computed: a million rules take seconds)."""
        digest, count = rules_digest(rules)
        return cls(count, digest)


# -- what an order's entries state -------------------------------------------------------


def logged_order(order: Order, authority: Authority) -> Order:
    """``order`` as its entries state it: by its authority, and without what only the store
    knows (its status and the index of its publishing entry). A stored order is enforced
    only when this equals its latest version's order."""
    return dataclasses.replace(
        order, authority_id=authority.id, status=OrderStatus.ACTIVE, log_index=None
    )


def canonical_jurisdiction(jurisdiction: Jurisdiction) -> Jurisdiction:
    """A jurisdiction with its networks in canonical order (address family, then address,
    then prefix length), as its entries state them."""
    nets = sorted(
        jurisdiction.networks,
        key=lambda n: (n.version, n.network_address.packed, n.prefixlen),
    )
    return Jurisdiction(jurisdiction.code, jurisdiction.name, tuple(nets))


# -- events ---------------------------------------------------------------------------------


class _Version:
    """What an order version (published or amended) says of its order."""

    __slots__ = ()
    order: Order
    authority: Authority

    def __post_init__(self) -> None:
        object.__setattr__(self, "order", logged_order(self.order, self.authority))

    @property
    def order_id(self) -> int:
        """The order this entry is about."""
        return self.order.id

    @property
    def scope(self) -> str:
        """The jurisdiction whose clients the order binds (``*``: every client)."""
        return ALL_JURISDICTIONS if self.order.all_jurisdictions else self.authority.jurisdiction

    def binds(self, jurisdiction: str, at: dt.datetime) -> bool:
        """True when the order binds ``jurisdiction``'s clients at ``at`` (its scope and
        dates only: whether it was revoked is the log state's to say)."""
        return self.scope in (ALL_JURISDICTIONS, jurisdiction) and self.order.in_force(at)


@dataclass(frozen=True, slots=True)
class OrderPublished(_Version):
    """A newly published order: its metadata, its authority and its rule set."""

    TYPE: ClassVar[str] = "order-published"
    time: dt.datetime
    order: Order
    authority: Authority
    rules: RuleSet


@dataclass(frozen=True, slots=True)
class OrderAmended(_Version):
    """An order whose rules or metadata changed: the new rule set, the delta and why."""

    TYPE: ClassVar[str] = "order-amended"
    time: dt.datetime
    order: Order
    authority: Authority
    rules: RuleSet
    added: int
    removed: int
    reason: str


@dataclass(frozen=True, slots=True)
class OrderRevoked:
    """An order withdrawn by its authority or the operator."""

    TYPE: ClassVar[str] = "order-revoked"
    time: dt.datetime
    order_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class OrderExpired:
    """An order that reached its sunset date."""

    TYPE: ClassVar[str] = "order-expired"
    time: dt.datetime
    order_id: int


@dataclass(frozen=True, slots=True)
class JurisdictionSet:
    """A jurisdiction created or changed: its whole record as it now stands, so the
    latest entry of a code alone says what the jurisdiction is (its networks decide whose
    orders apply to which clients, so they are policy too)."""

    TYPE: ClassVar[str] = "jurisdiction-set"
    time: dt.datetime
    jurisdiction: Jurisdiction

    def __post_init__(self) -> None:
        object.__setattr__(self, "jurisdiction", canonical_jurisdiction(self.jurisdiction))

    @property
    def order_id(self) -> None:
        """No order: a jurisdiction entry."""
        return None


@dataclass(frozen=True, slots=True)
class AppealFiled:
    """An appeal against an order (the appellant's contact is never published)."""

    TYPE: ClassVar[str] = "appeal-filed"
    time: dt.datetime
    appeal_id: int
    order_id: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class AppealDecided:
    """The decision on an appeal (``upheld`` or ``rejected``) and why."""

    TYPE: ClassVar[str] = "appeal-decided"
    time: dt.datetime
    appeal_id: int
    order_id: int
    outcome: str
    explanation: str


class RequestAsk(enum.StrEnum):
    """What a cross-border request asks of the jurisdiction it is sent to."""

    BLOCK = "block"  # block the names for the receiving jurisdiction's clients
    LIFT = "lift"  # lift a block of the names there (accepted: an exception order)


class RequestOutcome(enum.StrEnum):
    """How a cross-border request was closed."""

    ACCEPTED = "accepted"  # the receiving jurisdiction made an order of its own
    REFUSED = "refused"  # the receiving jurisdiction said no, with a reason
    WITHDRAWN = "withdrawn"  # the requesting authority took it back


@dataclass(frozen=True, slots=True)
class RequestFiled:
    """A request by an authority of one jurisdiction (``authority``) to another
    (``to``): what it asks, on which legal basis of its own, and the names (their rule
    set). It changes no policy: only an order of the receiving jurisdiction can."""

    TYPE: ClassVar[str] = "request-filed"
    time: dt.datetime
    request_id: int
    authority: Authority  # the requesting authority; its jurisdiction is the sender
    to: str  # the receiving jurisdiction's code
    ask: RequestAsk
    category: Category
    legal_basis: str  # in the sender's law
    reference: str
    rules: RuleSet

    @property
    def order_id(self) -> None:
        """No order: a request is not one."""
        return None


@dataclass(frozen=True, slots=True)
class RequestDecided:
    """A request closed: accepted (``order`` is the receiving jurisdiction's own order
    that answers it), refused, or withdrawn, by ``authority``, with a reason."""

    TYPE: ClassVar[str] = "request-decided"
    time: dt.datetime
    request_id: int
    authority: Authority  # the deciding (or withdrawing) authority
    outcome: RequestOutcome
    reason: str
    order: int | None  # the order an acceptance created; None otherwise

    @property
    def order_id(self) -> int | None:
        """The order an acceptance created (None for a refusal or withdrawal)."""
        return self.order


@dataclass(frozen=True, slots=True)
class UnknownEntry:
    """A well-formed entry of a type this version does not know (a newer writer's): it is
    on the log and hashed like any other, and states nothing this version enforces."""

    type: str

    @property
    def order_id(self) -> None:
        """Nothing known about it."""
        return None


@dataclass(frozen=True, slots=True)
class Source:
    """Where an adopted order comes from: an entry of another installation's log (a
    registry), named by the log's origin line, the entry's index and its RFC 6962 leaf
    hash, and the registry's own id of the order. Anyone holding the registry's log can
    check that its entry ``index`` hashes to ``leaf_hash`` and states that order."""

    origin: str
    index: int
    leaf_hash: str  # lowercase hex of the registry entry's leaf hash
    order_id: int  # the registry's id of the order


@dataclass(frozen=True, slots=True)
class OrderAdopted(_Version):
    """A mirror adopts (or re-adopts, amended) a registry's order: the local order as it
    now stands, with the registry's rule set, citing the registry entry it follows."""

    TYPE: ClassVar[str] = "order-adopted"
    time: dt.datetime
    order: Order
    authority: Authority
    rules: RuleSet
    source: Source


@dataclass(frozen=True, slots=True)
class AdoptionWithdrawn:
    """A mirror withdraws an adopted order because the registry's log ended it (revoked
    or expired), citing the registry entry that did."""

    TYPE: ClassVar[str] = "adoption-withdrawn"
    time: dt.datetime
    order_id: int
    reason: str
    source: Source


OrderVersion: TypeAlias = OrderPublished | OrderAmended | OrderAdopted
"""An entry that commits an order version (metadata and rule set)."""
OrderEnd: TypeAlias = OrderRevoked | OrderExpired | AdoptionWithdrawn
"""An entry after which an order is no longer in force."""
Event: TypeAlias = (
    OrderPublished
    | OrderAmended
    | OrderRevoked
    | OrderExpired
    | JurisdictionSet
    | AppealFiled
    | AppealDecided
    | RequestFiled
    | RequestDecided
    | UnknownEntry
    | OrderAdopted
    | AdoptionWithdrawn
)
EVENT_TYPES: tuple[type[Event], ...] = (
    OrderPublished,
    OrderAmended,
    OrderRevoked,
    OrderExpired,
    JurisdictionSet,
    AppealFiled,
    AppealDecided,
    RequestFiled,
    RequestDecided,
    OrderAdopted,
    AdoptionWithdrawn,
)


# -- encoding --------------------------------------------------------------------------


def _when(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _authority_json(a: Authority) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "kind": a.kind.value,
        "jurisdiction": a.jurisdiction,
        "contacts": list(a.contacts),
    }


def _order_json(order: Order, a: Authority) -> dict[str, Any]:
    return {
        "id": order.id,
        "authority": _authority_json(a),
        "title": order.title,
        "legal_basis": order.legal_basis,
        "reference": order.reference,
        "category": order.category.value,
        "action": order.action.value,
        "issued": _when(order.issued),
        "effective_from": _when(order.effective_from),
        "expires": _when(order.expires),
        "document_url": order.document_url,
        "all_jurisdictions": order.all_jurisdictions,
    }


def _jurisdiction_json(jurisdiction: Jurisdiction) -> dict[str, Any]:
    return {
        "code": jurisdiction.code,
        "name": jurisdiction.name,
        "networks": [str(n) for n in canonical_jurisdiction(jurisdiction).networks],
    }


def _source_json(source: Source) -> dict[str, Any]:
    return {
        "origin": source.origin,
        "index": source.index,
        "leaf_hash": source.leaf_hash,
        "order": source.order_id,
    }


def to_json(event: Event) -> dict[str, Any]:
    """The JSON object an event's entry holds."""
    body: dict[str, Any]
    match event:
        case OrderPublished():
            body = {
                "order": _order_json(event.order, event.authority),
                "rules": {"count": event.rules.count, "digest": event.rules.digest},
            }
        case OrderAmended():
            body = {
                "order": _order_json(event.order, event.authority),
                "rules": {
                    "count": event.rules.count,
                    "digest": event.rules.digest,
                    "added": event.added,
                    "removed": event.removed,
                },
                "reason": event.reason,
            }
        case OrderRevoked():
            body = {"order": event.order_id, "reason": event.reason}
        case OrderExpired():
            body = {"order": event.order_id}
        case JurisdictionSet():
            body = {"jurisdiction": _jurisdiction_json(event.jurisdiction)}
        case AppealFiled():
            body = {
                "appeal": event.appeal_id,
                "order": event.order_id,
                "name": event.name,
                "reason": event.reason,
            }
        case AppealDecided():
            body = {
                "appeal": event.appeal_id,
                "order": event.order_id,
                "outcome": event.outcome,
                "explanation": event.explanation,
            }
        case RequestFiled():
            body = {
                "request": {
                    "id": event.request_id,
                    "authority": _authority_json(event.authority),
                    "to": event.to,
                    "ask": event.ask.value,
                    "category": event.category.value,
                    "legal_basis": event.legal_basis,
                    "reference": event.reference,
                },
                "rules": {"count": event.rules.count, "digest": event.rules.digest},
            }
        case RequestDecided():
            body = {
                "request": event.request_id,
                "authority": _authority_json(event.authority),
                "outcome": event.outcome.value,
                "reason": event.reason,
                "resulting_order": event.order,
            }
        case UnknownEntry():
            raise EntryError(f"an entry of unknown type {event.type!r} cannot be written")
        case OrderAdopted():
            body = {
                "order": _order_json(event.order, event.authority),
                "rules": {"count": event.rules.count, "digest": event.rules.digest},
                "source": _source_json(event.source),
            }
        case AdoptionWithdrawn():
            body = {
                "order": event.order_id,
                "reason": event.reason,
                "source": _source_json(event.source),
            }
    return {"type": event.TYPE, "time": event.time.isoformat(), **body}


def encode(event: Event) -> bytes:
    """The canonical bytes of an event's entry; EntryError when it exceeds
    ``MAX_ENTRY_SIZE``."""
    try:
        data = canonical_json(to_json(event))
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 for it
        raise EntryError(f"an entry holds text that is not Unicode: {exc}") from None
    if len(data) > MAX_ENTRY_SIZE:
        raise EntryError(f"log entry of {len(data)} bytes exceeds {MAX_ENTRY_SIZE}")
    return data


# -- parsing ------------------------------------------------------------------------------


class _Object:
    """A JSON object read field by field, each type checked; EntryError names the field."""

    def __init__(self, value: Any, where: str, keys: Iterable[str]) -> None:
        if not isinstance(value, dict):
            raise EntryError(f"{where} is not an object")
        want = set(keys)
        if set(value) != want:
            extra = sorted(set(value) - want)
            missing = sorted(want - set(value))
            raise EntryError(f"{where}: fields {extra or ''}{missing or ''} unexpected/missing")
        self.value: Mapping[str, Any] = value
        self.where = where

    def _fail(self, key: str, what: str) -> EntryError:
        return EntryError(f"{self.where}.{key} is not {what}")

    def integer(self, key: str) -> int:
        v = self.value[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise self._fail(key, "a non-negative integer")
        return v

    def text(self, key: str) -> str:
        v = self.value[key]
        if not isinstance(v, str):
            raise self._fail(key, "a string")
        return v

    def flag(self, key: str) -> bool:
        v = self.value[key]
        if not isinstance(v, bool):
            raise self._fail(key, "true or false")
        return v

    def enum(self, key: str, cls: type[enum.StrEnum]) -> Any:
        try:
            return cls(self.text(key))
        except ValueError:
            raise self._fail(key, f"a {cls.__name__}") from None

    def time(self, key: str) -> dt.datetime:
        try:
            value = dt.datetime.fromisoformat(self.text(key))
        except ValueError:
            raise self._fail(key, "an ISO 8601 time") from None
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    def optional_time(self, key: str) -> dt.datetime | None:
        return None if self.value[key] is None else self.time(key)

    def date(self, key: str) -> dt.date:
        try:
            return dt.date.fromisoformat(self.text(key))
        except ValueError:
            raise self._fail(key, "an ISO 8601 date") from None

    def strings(self, key: str) -> tuple[str, ...]:
        v = self.value[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self._fail(key, "a list of strings")
        return tuple(v)

    def object(self, key: str, keys: Iterable[str]) -> _Object:
        return _Object(self.value[key], f"{self.where}.{key}", keys)


_AUTHORITY_KEYS = ("id", "name", "kind", "jurisdiction", "contacts")
_ORDER_KEYS = (
    "id",
    "authority",
    "title",
    "legal_basis",
    "reference",
    "category",
    "action",
    "issued",
    "effective_from",
    "expires",
    "document_url",
    "all_jurisdictions",
)


def _authority(a: _Object) -> Authority:
    return Authority(
        a.integer("id"),
        a.text("name"),
        a.enum("kind", AuthorityKind),
        a.text("jurisdiction"),
        a.strings("contacts"),
    )


def _order(o: _Object) -> tuple[Order, Authority]:
    authority = _authority(o.object("authority", _AUTHORITY_KEYS))
    order = Order(
        id=o.integer("id"),
        authority_id=authority.id,
        title=o.text("title"),
        legal_basis=o.text("legal_basis"),
        reference=o.text("reference"),
        category=o.enum("category", Category),
        action=o.enum("action", Action),
        issued=o.date("issued"),
        effective_from=o.time("effective_from"),
        expires=o.optional_time("expires"),
        document_url=o.text("document_url"),
        all_jurisdictions=o.flag("all_jurisdictions"),
    )
    return order, authority


def _rule_set(r: _Object) -> RuleSet:
    digest = r.text("digest")
    if len(digest) != DIGEST_HEX or digest.strip("0123456789abcdef"):
        raise EntryError(f"{r.where}.digest is not {DIGEST_HEX} lowercase hex digits")
    return RuleSet(r.integer("count"), digest)


def _jurisdiction(j: _Object) -> Jurisdiction:
    try:
        networks = tuple(ipaddress.ip_network(n, strict=True) for n in j.strings("networks"))
    except ValueError as exc:
        raise EntryError(f"{j.where}.networks: {exc}") from None
    return Jurisdiction(j.text("code"), j.text("name"), networks)


_BASE = ("type", "time")
_SOURCE_KEYS = ("origin", "index", "leaf_hash", "order")


def _source(s: _Object) -> Source:
    digest = s.text("leaf_hash")
    if len(digest) != DIGEST_HEX or digest.strip("0123456789abcdef"):
        raise EntryError(f"{s.where}.leaf_hash is not {DIGEST_HEX} lowercase hex digits")
    origin = s.text("origin")
    if not origin or "\n" in origin:
        raise EntryError(f"{s.where}.origin is not a one-line log origin")
    return Source(origin, s.integer("index"), digest, s.integer("order"))


def _event(kind: str, value: dict[str, Any]) -> Event:
    if kind == OrderPublished.TYPE:
        e = _Object(value, "entry", (*_BASE, "order", "rules"))
        return OrderPublished(
            e.time("time"),
            *_order(e.object("order", _ORDER_KEYS)),
            _rule_set(e.object("rules", ("count", "digest"))),
        )
    if kind == OrderAmended.TYPE:
        e = _Object(value, "entry", (*_BASE, "order", "rules", "reason"))
        r = e.object("rules", ("count", "digest", "added", "removed"))
        return OrderAmended(
            e.time("time"),
            *_order(e.object("order", _ORDER_KEYS)),
            _rule_set(r),
            r.integer("added"),
            r.integer("removed"),
            e.text("reason"),
        )
    if kind == OrderRevoked.TYPE:
        e = _Object(value, "entry", (*_BASE, "order", "reason"))
        return OrderRevoked(e.time("time"), e.integer("order"), e.text("reason"))
    if kind == OrderExpired.TYPE:
        e = _Object(value, "entry", (*_BASE, "order"))
        return OrderExpired(e.time("time"), e.integer("order"))
    if kind == JurisdictionSet.TYPE:
        e = _Object(value, "entry", (*_BASE, "jurisdiction"))
        j = e.object("jurisdiction", ("code", "name", "networks"))
        return JurisdictionSet(e.time("time"), _jurisdiction(j))
    if kind == AppealFiled.TYPE:
        e = _Object(value, "entry", (*_BASE, "appeal", "order", "name", "reason"))
        return AppealFiled(
            e.time("time"),
            e.integer("appeal"),
            e.integer("order"),
            e.text("name"),
            e.text("reason"),
        )
    if kind == AppealDecided.TYPE:
        e = _Object(value, "entry", (*_BASE, "appeal", "order", "outcome", "explanation"))
        return AppealDecided(
            e.time("time"),
            e.integer("appeal"),
            e.integer("order"),
            e.text("outcome"),
            e.text("explanation"),
        )
    if kind == RequestFiled.TYPE:
        e = _Object(value, "entry", (*_BASE, "request", "rules"))
        r = e.object(
            "request",
            ("id", "authority", "to", "ask", "category", "legal_basis", "reference"),
        )
        return RequestFiled(
            e.time("time"),
            r.integer("id"),
            _authority(r.object("authority", _AUTHORITY_KEYS)),
            r.text("to"),
            r.enum("ask", RequestAsk),
            r.enum("category", Category),
            r.text("legal_basis"),
            r.text("reference"),
            _rule_set(e.object("rules", ("count", "digest"))),
        )
    if kind == RequestDecided.TYPE:
        e = _Object(
            value,
            "entry",
            (*_BASE, "request", "authority", "outcome", "reason", "resulting_order"),
        )
        resulting = None if e.value["resulting_order"] is None else e.integer("resulting_order")
        return RequestDecided(
            e.time("time"),
            e.integer("request"),
            _authority(e.object("authority", _AUTHORITY_KEYS)),
            e.enum("outcome", RequestOutcome),
            e.text("reason"),
            resulting,
        )
    if kind == OrderAdopted.TYPE:
        e = _Object(value, "entry", (*_BASE, "order", "rules", "source"))
        return OrderAdopted(
            e.time("time"),
            *_order(e.object("order", _ORDER_KEYS)),
            _rule_set(e.object("rules", ("count", "digest"))),
            _source(e.object("source", _SOURCE_KEYS)),
        )
    if kind == AdoptionWithdrawn.TYPE:
        e = _Object(value, "entry", (*_BASE, "order", "reason", "source"))
        return AdoptionWithdrawn(
            e.time("time"),
            e.integer("order"),
            e.text("reason"),
            _source(e.object("source", _SOURCE_KEYS)),
        )
    return UnknownEntry(kind)


def parse(data: bytes) -> Event:
    """The event an entry states; EntryError when the bytes are not a clearwall entry
    (not a JSON object with a string ``type``, or a known type with missing, extra or
    ill-typed fields). A well-formed entry of an unknown type is an ``UnknownEntry``."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EntryError(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise EntryError("not a JSON object with a type")
    try:
        return _event(value["type"], value)
    except KeyError as exc:  # pragma: no cover - _Object checks every key first
        raise EntryError(f"missing field {exc}") from None


# -- cheap reading of the canonical layout ---------------------------------------------------


class Family(enum.Enum):
    """What an entry can be about, told from its first bytes without decoding it.

    Canonical JSON sorts keys, so the first key of each event's object is fixed: an
    order version's is ``order`` holding an object, an order end's ``order`` holding
    a number, a jurisdiction's ``jurisdiction``, an appeal's ``appeal``. Readers that
    fold only some events skip the others undecoded (a log is mostly of one kind).
    """

    ORDER_VERSION = "order-version"
    ORDER_END = "order-end"
    JURISDICTION = "jurisdiction"
    APPEAL = "appeal"
    OTHER = "other"  # anything else, well-formed or not: decode it to know


_ORDER_VERSION = b'{"order":{'


def family(data: bytes) -> Family:
    """The family of an entry in canonical form (``OTHER`` when its start is none of
    theirs); an entry of one family never parses as an event of another."""
    if data.startswith(b'{"order":'):
        return Family.ORDER_VERSION if data[9:10] == b"{" else Family.ORDER_END
    if data.startswith(b'{"appeal":'):
        return Family.APPEAL
    if data.startswith(b'{"jurisdiction":'):
        return Family.JURISDICTION
    return Family.OTHER


def order_version(data: bytes) -> OrderVersion | None:
    """The order version an entry commits (published or amended), or None when it commits
    none or is no clearwall entry; other entries are not decoded."""
    # family(data) is Family.ORDER_VERSION, inlined: sync asks this of every new entry
    if not data.startswith(_ORDER_VERSION):
        return None
    try:
        event = parse(data)
    except EntryError:
        return None
    return event if isinstance(event, OrderPublished | OrderAmended | OrderAdopted) else None
