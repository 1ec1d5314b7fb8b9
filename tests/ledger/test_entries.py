"""The entry model: every event's canonical bytes, parsed back to the same event.

The bytes are the ones the log has always held (golden entries written by the encoder
before the model existed), every event type survives ``parse(encode(x)) == x`` for any
value (hypothesis), and bytes that are not an entry are refused with a reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.ledger import entries
from clearwall.ledger.entries import EntryError, Event
from clearwall.model import Action, AuthorityKind, Category, OrderStatus, RuleKind
from clearwall.policy.model import Authority, Jurisdiction, Order, RuleSpec

AT = dt.datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)
AUTHORITY = Authority(
    3, "High Court (fictional)", AuthorityKind.COURT, "xa", ("mailto:c@x.example", "tel:+1")
)
ORDER = Order(
    7, 3, "Tïtle", "Act s.1", "REF-7", Category.COURT_ORDER, Action.NXDOMAIN,
    dt.date(2026, 1, 5), dt.datetime(2026, 1, 6, tzinfo=dt.UTC),
    dt.datetime(2027, 1, 1, 10, tzinfo=dt.UTC), "https://doc.example/7",
    OrderStatus.ACTIVE, False, 4,
)  # fmt: skip
RULES = entries.RuleSet.of(
    [
        RuleSpec(RuleKind.SUBTREE, "b.example"),
        RuleSpec(RuleKind.EXACT, "a.example", Action.SINKHOLE),
    ]
)
J = Jurisdiction(
    "xa", "Demo A", (ipaddress.ip_network("::1/128"), ipaddress.ip_network("127.0.0.0/8"))
)
_META = (
    '{"action":"nxdomain","all_jurisdictions":false,"authority":{"contacts":["mailto:c@x.example"'
    ',"tel:+1"],"id":3,"jurisdiction":"xa","kind":"court","name":"High Court (fictional)"},'
    '"category":"court-order","document_url":"https://doc.example/7","effective_from":'
    '"2026-01-06T00:00:00+00:00","expires":"2027-01-01T10:00:00+00:00","id":7,"issued":'
    '"2026-01-05","legal_basis":"Act s.1","reference":"REF-7","title":"Tïtle"}'
)
_DIGEST = "f860c9abc40f30487d68fc0325364d7d3718328396dbf3ae9fc7ea496823856a"
_TIME = '"time":"2026-03-01T12:30:05.123456+00:00"'
SOURCE = entries.Source("registry.example/log", 12, "ab" * 32, 5)
_SOURCE = f'{{"index":12,"leaf_hash":"{"ab" * 32}","order":5,"origin":"registry.example/log"}}'

# What the encoder wrote before the entry model (commit b873473), byte for byte.
GOLDEN: list[tuple[Event, str]] = [
    (
        entries.OrderPublished(AT, ORDER, AUTHORITY, RULES),
        f'{{"order":{_META},"rules":{{"count":2,"digest":"{_DIGEST}"}},{_TIME},'
        '"type":"order-published"}',
    ),
    (
        entries.OrderAmended(AT, ORDER, AUTHORITY, RULES, 1, 2, "why"),
        f'{{"order":{_META},"reason":"why","rules":{{"added":1,"count":2,"digest":"{_DIGEST}",'
        f'"removed":2}},{_TIME},"type":"order-amended"}}',
    ),
    (
        entries.OrderRevoked(AT, 7, "gone"),
        f'{{"order":7,"reason":"gone",{_TIME},"type":"order-revoked"}}',
    ),
    (entries.OrderExpired(AT, 7), f'{{"order":7,{_TIME},"type":"order-expired"}}'),
    (
        entries.JurisdictionSet(AT, J),
        '{"jurisdiction":{"code":"xa","name":"Demo A","networks":["127.0.0.0/8","::1/128"]},'
        f'{_TIME},"type":"jurisdiction-set"}}',
    ),
    (
        entries.AppealFiled(AT, 2, 7, "a.example", "wrong"),
        f'{{"appeal":2,"name":"a.example","order":7,"reason":"wrong",{_TIME},"type":"appeal-filed"}}',
    ),
    (
        entries.AppealDecided(AT, 2, 7, "upheld", "right"),
        f'{{"appeal":2,"explanation":"right","order":7,"outcome":"upheld",{_TIME},'
        '"type":"appeal-decided"}',
    ),
    # Adoptions by a mirror (issue 18), as first written: a version citing its source.
    (
        entries.OrderAdopted(AT, ORDER, AUTHORITY, RULES, SOURCE),
        f'{{"order":{_META},"rules":{{"count":2,"digest":"{_DIGEST}"}},"source":{_SOURCE},'
        f'{_TIME},"type":"order-adopted"}}',
    ),
    (
        entries.AdoptionWithdrawn(AT, 7, "revoked at the registry: gone", SOURCE),
        f'{{"order":7,"reason":"revoked at the registry: gone","source":{_SOURCE},{_TIME},'
        '"type":"adoption-withdrawn"}',
    ),
]


@pytest.mark.parametrize(("event", "golden"), GOLDEN, ids=[type(e).__name__ for e, _ in GOLDEN])
def test_entries_keep_their_bytes(event: Event, golden: str) -> None:
    data = golden.encode("utf-8")
    assert entries.encode(event) == data
    assert entries.parse(data) == event


# -- any value of every event type -----------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
IDS = st.integers(0, 2**53)
TIMES = st.datetimes(
    min_value=dt.datetime(1990, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
)
DIGESTS = st.binary(min_size=32, max_size=32).map(bytes.hex)
NETWORKS = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda ap: ipaddress.ip_network(f"{ap[0]}/{ap[1]}", strict=False))
AUTHORITIES = st.builds(
    Authority,
    id=IDS,
    name=TEXT,
    kind=st.sampled_from(AuthorityKind),
    jurisdiction=TEXT,
    contacts=st.lists(TEXT, max_size=3).map(tuple),
)
ORDERS = st.builds(
    Order,
    id=IDS,
    authority_id=IDS,
    title=TEXT,
    legal_basis=TEXT,
    reference=TEXT,
    category=st.sampled_from(Category),
    action=st.sampled_from(Action),
    issued=st.dates(),
    effective_from=TIMES,
    expires=st.none() | TIMES,
    document_url=TEXT,
    status=st.sampled_from(OrderStatus),  # the store's, not the log's: not encoded
    all_jurisdictions=st.booleans(),
    log_index=st.none() | IDS,  # likewise
)
RULE_SETS = st.builds(entries.RuleSet, count=IDS, digest=DIGESTS)
SOURCES = st.builds(
    entries.Source,
    origin=TEXT.filter(lambda t: bool(t) and "\n" not in t),
    index=IDS,
    leaf_hash=DIGESTS,
    order_id=IDS,
)
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(entries.OrderPublished, TIMES, ORDERS, AUTHORITIES, RULE_SETS),
    st.builds(entries.OrderAmended, TIMES, ORDERS, AUTHORITIES, RULE_SETS, IDS, IDS, TEXT),
    st.builds(entries.OrderRevoked, TIMES, IDS, TEXT),
    st.builds(entries.OrderExpired, TIMES, IDS),
    st.builds(
        entries.JurisdictionSet,
        TIMES,
        st.builds(Jurisdiction, TEXT, TEXT, st.lists(NETWORKS, max_size=4).map(tuple)),
    ),
    st.builds(entries.AppealFiled, TIMES, IDS, IDS, TEXT, TEXT),
    st.builds(entries.AppealDecided, TIMES, IDS, IDS, TEXT, TEXT),
    st.builds(
        entries.RequestFiled,
        TIMES,
        IDS,
        AUTHORITIES,
        TEXT,
        st.sampled_from(entries.RequestAsk),
        st.sampled_from(Category),
        TEXT,
        TEXT,
        RULE_SETS,
    ),
    st.builds(
        entries.RequestDecided,
        TIMES,
        IDS,
        AUTHORITIES,
        st.sampled_from(entries.RequestOutcome),
        TEXT,
        st.none() | IDS,
    ),
    st.builds(entries.OrderAdopted, TIMES, ORDERS, AUTHORITIES, RULE_SETS, SOURCES),
    st.builds(entries.AdoptionWithdrawn, TIMES, IDS, TEXT, SOURCES),
)


@settings(max_examples=400)
@given(EVENTS)
def test_parse_inverts_encode_for_every_event(event: Event) -> None:
    data = entries.encode(event)
    assert entries.parse(data) == event
    assert entries.encode(entries.parse(data)) == data  # canonical: one encoding per event


@settings(max_examples=200)
@given(EVENTS)
def test_the_family_of_an_entry_is_the_family_of_its_event(event: Event) -> None:
    expected = {
        entries.OrderPublished: entries.Family.ORDER_VERSION,
        entries.OrderAmended: entries.Family.ORDER_VERSION,
        entries.OrderRevoked: entries.Family.ORDER_END,
        entries.OrderExpired: entries.Family.ORDER_END,
        entries.JurisdictionSet: entries.Family.JURISDICTION,
        entries.AppealFiled: entries.Family.APPEAL,
        entries.AppealDecided: entries.Family.APPEAL,
        # requests change no order: decoded only by those who read them
        entries.RequestFiled: entries.Family.OTHER,
        entries.RequestDecided: entries.Family.OTHER,
        entries.OrderAdopted: entries.Family.ORDER_VERSION,
        entries.AdoptionWithdrawn: entries.Family.ORDER_END,
    }[type(event)]
    data = entries.encode(event)
    assert entries.family(data) is expected
    version = entries.order_version(data)
    assert version == (event if expected is entries.Family.ORDER_VERSION else None)


# -- what is not an entry ------------------------------------------------------------------


def _with(golden: int, **change: object) -> bytes:
    value = json.loads(GOLDEN[golden][1])
    for path, new in change.items():
        *where, last = path.split("__")
        target = value
        for key in where:
            target = target[key]
        if new is KeyError:
            del target[last]
        else:
            target[last] = new
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"i":1}', "not a JSON object with a type"),
        (b"[1, 2]", "not a JSON object with a type"),
        (b'{"type":7}', "not a JSON object with a type"),
        (_with(0, rules__digest="ab"), "digest is not 64 lowercase hex"),
        (_with(0, rules__digest=_DIGEST.upper()), "digest is not 64 lowercase hex"),
        (_with(0, order__id=True), "order.id is not a non-negative integer"),
        (_with(0, order__id=-1), "order.id is not a non-negative integer"),
        (_with(0, order__category="gossip"), "order.category is not a Category"),
        (_with(0, order__effective_from="soon"), "effective_from is not an ISO 8601 time"),
        (_with(0, order__issued=None), "order.issued is not a string"),
        (_with(0, order__authority__contacts="x"), "contacts is not a list of strings"),
        (_with(0, order__all_jurisdictions=1), "all_jurisdictions is not true or false"),
        (_with(0, rules__count=KeyError), "unexpected/missing"),
        (_with(0, extra="field"), "unexpected/missing"),
        (_with(2, order={"id": 7}), "order is not a non-negative integer"),
        (_with(4, jurisdiction__networks=["10.0.0.1/8"]), "has host bits set"),
        (_with(4, jurisdiction__networks="10.0.0.0/8"), "networks is not a list of strings"),
        (_with(7, source__leaf_hash="ab"), "leaf_hash is not 64 lowercase hex"),
        (_with(7, source__origin=""), "origin is not a one-line log origin"),
        (_with(7, source__origin="a\nb"), "origin is not a one-line log origin"),
        (_with(7, source__index=-1), "source.index is not a non-negative integer"),
        (_with(8, source=KeyError), "unexpected/missing"),
    ],
)
def test_bytes_that_are_no_entry_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(EntryError, match=why):
        entries.parse(data)


def test_an_entry_of_a_newer_type_is_kept_as_unknown() -> None:
    event = entries.parse(b'{"time":"2030-01-01T00:00:00+00:00","type":"adoption"}')
    assert event == entries.UnknownEntry("adoption") and event.order_id is None
    with pytest.raises(EntryError, match="unknown type"):
        entries.encode(event)


@pytest.mark.parametrize(
    "event",
    [
        entries.OrderRevoked(AT, 7, "x" * entries.MAX_ENTRY_SIZE),
        entries.AppealFiled(AT, 1, 7, "a.example", "\ud800 a lone surrogate"),
    ],
    ids=["too large", "not Unicode"],
)
def test_an_event_that_cannot_be_an_entry_is_refused(event: Event) -> None:
    with pytest.raises(EntryError):
        entries.encode(event)


@pytest.mark.parametrize(
    ("jurisdiction", "at", "scoped", "everywhere"),
    [
        ("xa", dt.datetime(2026, 6, 1, tzinfo=dt.UTC), True, True),
        ("xb", dt.datetime(2026, 6, 1, tzinfo=dt.UTC), False, True),  # another jurisdiction
        ("xa", dt.datetime(2026, 1, 5, tzinfo=dt.UTC), False, False),  # before it takes effect
        ("xa", dt.datetime(2027, 1, 1, 10, tzinfo=dt.UTC), False, False),  # at its expiry
    ],
)
def test_an_order_binds_its_scope_in_its_dates(
    jurisdiction: str, at: dt.datetime, scoped: bool, everywhere: bool
) -> None:
    published = entries.OrderPublished(AT, ORDER, AUTHORITY, RULES)
    assert published.binds(jurisdiction, at) is scoped
    anywhere = dataclasses.replace(ORDER, all_jurisdictions=True)
    assert (
        entries.OrderPublished(AT, anywhere, AUTHORITY, RULES).binds(jurisdiction, at) is everywhere
    )


def test_a_version_states_the_order_as_logged_whatever_the_store_adds() -> None:
    stored = dataclasses.replace(ORDER, status=OrderStatus.REVOKED, log_index=12)
    version = entries.OrderAmended(AT, stored, AUTHORITY, RULES, 0, 0, "")
    assert version.order == entries.logged_order(ORDER, AUTHORITY)
    assert version.order.status is OrderStatus.ACTIVE and version.order.log_index is None
