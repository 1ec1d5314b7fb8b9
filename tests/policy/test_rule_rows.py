"""RuleRows (the store's text rows) are the RuleSpecs they stand for: same digest lines,
same compiled tables, RuleSpecs to anyone else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matcher_builders import order

from clearwall.errors import SnapshotError
from clearwall.ledger.entries import rules_digest, sorted_rule_lines
from clearwall.model import Action, RuleKind
from clearwall.policy.compiler import build
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
