"""RuleRows (the store's text rows) are the RuleSpecs they stand for: same digest lines,
same compiled tables, RuleSpecs to anyone else."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matcher_builders import order

from clearwall.errors import SnapshotError
from clearwall.ledger.entries import rules_digest, sorted_rule_lines
from clearwall.model import Action, RuleKind
from clearwall.policy.compiler import Tables, build, content_hash
from clearwall.policy.model import RuleRows, RuleSpec

NAME_KINDS = [k for k in RuleKind if not k.is_ip]
IP_KINDS = [k for k in RuleKind if k.is_ip]
names = st.from_regex(r"[a-z0-9]{1,6}(\.[a-z0-9-]{1,6}){0,3}", fullmatch=True)
name_rule = st.tuples(st.sampled_from(NAME_KINDS), names)
ip_rule = st.tuples(
    st.sampled_from(IP_KINDS),
    st.sampled_from(["192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32"]),
)
actions = st.sampled_from([None, None, *Action])
rows = st.lists(
    st.tuples(st.one_of(name_rule, name_rule, ip_rule), actions).map(
        lambda r: (r[0][0].value, r[0][1], None if r[1] is None else r[1].value)
    ),
    max_size=40,
)


def specs(raw: list[tuple[str, str, str | None]]) -> list[RuleSpec]:
    return [RuleSpec(RuleKind(k), v, Action(a) if a else None) for k, v, a in raw]


@settings(max_examples=300)
@given(rows)
def test_rows_read_as_their_rulespecs(raw: list[tuple[str, str, str | None]]) -> None:
    as_rows = RuleRows(raw)
    assert list(as_rows) == specs(raw) and len(as_rows) == len(raw)
    assert as_rows == tuple(specs(raw)) and as_rows[1:] == tuple(specs(raw[1:]))
    # Duplicates too (the store's UNIQUE constraint rules them out; the lines must not
    # depend on it), and in any order (another database orders rows otherwise).
    doubled = raw + raw[:3]
    assert sorted_rule_lines(RuleRows(doubled)) == sorted_rule_lines(specs(doubled))
    assert rules_digest(RuleRows(raw[::-1])) == rules_digest(specs(raw))


@settings(max_examples=150, deadline=None)
@given(rows)
def test_rows_compile_to_the_tables_of_their_rulespecs(
    raw: list[tuple[str, str, str | None]],
) -> None:
    from clearwall.policy.model import CompiledOrder

    base = order(1, "xa")
    a = build([CompiledOrder(base.order, base.authority, RuleRows(raw))], [], 3, now=1.0)
    b = build([CompiledOrder(base.order, base.authority, tuple(specs(raw)))], [], 3, now=1.0)
    assert a.version == b.version and a.ip_rules == b.ip_rules and a.groups == b.groups


@pytest.mark.parametrize(
    "raw, error",
    [
        ([("nonsense", "a.example", None)], ValueError),
        ([("exact", "a.example", "explode")], ValueError),
    ],
)
def test_unknown_kinds_and_actions_are_refused(
    raw: list[tuple[str, str, str | None]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        RuleRows(raw)


@pytest.mark.parametrize(
    "raw", [[("exact", "a.example.", None)], [("response-ip", "not-a-cidr", None)]]
)
def test_bad_values_are_compile_errors(raw: list[tuple[str, str, str | None]]) -> None:
    from clearwall.policy.model import CompiledOrder

    base = order(1, "xa")
    with pytest.raises(SnapshotError):
        build([CompiledOrder(base.order, base.authority, RuleRows(raw))], [], 3)


# -- the text form: one kind, one action, the values one a line ------------------------

plain_values = st.lists(
    st.one_of(names, names, st.sampled_from(["a b", "a", "ab", "a.b", "0-a", "~x", "A.example"])),
    min_size=1,
    max_size=40,
)


def text_form(kind: RuleKind, action: Action | None, vals: list[str]) -> RuleRows:
    """``vals`` as the store's text form (which must apply to them)."""
    found = RuleRows.of_text(kind.value, action and action.value, "\n".join(vals), len(vals))
    assert found is not None and found.text is not None
    return found


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAME_KINDS), actions, plain_values, st.booleans())
def test_text_form_reads_as_its_rulespecs_and_has_their_digest(
    kind: RuleKind, action: Action | None, vals: list[str], sort: bool
) -> None:
    """In the store's order or any other, duplicates and values with a space included
    (whose lines do not sort as the values do): the digest of the text form is the
    digest of the same rules as RuleSpecs, computed in C when the lines ascend; its rows,
    made when asked for, are the rules in (kind, value) order."""
    if sort:
        vals = sorted(vals)
    rules = text_form(kind, action, vals)
    as_specs = [RuleSpec(kind, v, action) for v in vals]
    assert rules_digest(rules) == rules_digest(as_specs)
    assert len(rules) == len(vals) and rules.kinds == {kind.value}
    assert list(rules) == sorted(as_specs, key=lambda r: r.value)
    assert rules == RuleRows([(kind.value, v, action and action.value) for v in sorted(vals)])


def tables(*orders: tuple[int, Sequence[RuleSpec]], keytable: bool = False) -> Tables:
    """The tables of orders (id, rules), all of one jurisdiction; with ``keytable``,
    the names in a key table (as a compile the gateway waits for)."""
    from clearwall.policy.model import CompiledOrder

    made = [order(oid, "xa") for oid, _rules in orders]
    return build(
        [CompiledOrder(o.order, o.authority, r) for o, (_oid, r) in zip(made, orders, strict=True)],
        [],
        3,
        now=1.0,
        keytable_from=0 if keytable else None,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(NAME_KINDS),
    actions,
    plain_values,
    rows,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_text_form_compiles_to_the_tables_of_its_rulespecs(
    kind: RuleKind,
    action: Action | None,
    vals: list[str],
    other: list[tuple[str, str, str | None]],
    sort: bool,
    text_first: bool,
    keytable: bool,
) -> None:
    """Alone or beside an order read as rows (mixed kinds and actions, CIDRs, names in
    common), in either position and with its values in any order, its names in a trie
    or a key table: the same tables, to the content hash, as from the same rules as
    RuleSpecs and as rows."""
    vals = [v for v in vals if " " not in v]  # not a name the compiler takes, either way
    if not vals:
        vals = ["a.example"]
    if sort:
        vals = sorted(vals)
    text = (1, text_form(kind, action, vals))
    specs_ = (1, tuple(RuleSpec(kind, v, action) for v in vals))
    rows_ = (2, RuleRows(other))
    other_specs = (2, tuple(specs(other)))
    as_rows = (1, RuleRows([(kind.value, v, action and action.value) for v in vals]))
    kt = {"keytable": keytable}
    a = tables(text, rows_, **kt) if text_first else tables(rows_, text, **kt)
    b = tables(specs_, other_specs, **kt) if text_first else tables(other_specs, specs_, **kt)
    c = tables(as_rows, rows_, **kt) if text_first else tables(rows_, as_rows, **kt)
    assert (a.version, a.ip_rules, a.groups) == (b.version, b.ip_rules, b.groups)
    assert content_hash(a) == content_hash(b) == content_hash(c) and a.version == c.version


@pytest.mark.parametrize(
    "kind, text, count",
    [
        ("response-ip", "192.0.2.0/24", 1),  # an IP kind: its CIDRs are parsed per rule
        ("exact", "a.example\nb\nc", 2),  # a newline inside a value
        ("exact", "a.exa\tmple", 1),  # a control character
        ("exact", "a.exa\x7fmple", 1),
        ("exact", "bücher.example", 1),  # not ASCII
        ("exact", "", 0),  # no rules
    ],
)
def test_text_form_is_refused_for_what_it_cannot_stand_for(
    kind: str, text: str, count: int
) -> None:
    """None: the store then reads rows, as for any order."""
    assert RuleRows.of_text(kind, None, text, count) is None


@pytest.mark.parametrize("kind, action", [("nonsense", None), ("exact", "explode")])
def test_text_form_refuses_unknown_kinds_and_actions(kind: str, action: str | None) -> None:
    with pytest.raises(ValueError):
        RuleRows.of_text(kind, action, "a.example", 1)


@pytest.mark.parametrize("text", ["a.example.", "a\n\nb", "\na", "a\n", "a.\nb", ""])
def test_text_form_bad_names_are_compile_errors(text: str) -> None:
    """An empty name or one with a trailing dot, as the rows path says."""
    rules = RuleRows.of_text("exact", None, text, text.count("\n") + 1)
    assert rules is not None
    with pytest.raises(SnapshotError, match="not canonical"):
        tables((1, rules))
