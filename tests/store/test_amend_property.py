"""Property: any sequence of amendments leaves stored rules, log digest and loader in agreement."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.ledger import entries
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store
from clearwall.store.loader import load_policy
from clearwall.store.reader import PolicyReader

NAMES = [f"n{i}.example" for i in range(8)]
RULE = st.builds(
    RuleSpec, st.sampled_from([RuleKind.EXACT, RuleKind.SUBTREE]), st.sampled_from(NAMES)
)
STEP = st.tuples(st.lists(RULE, max_size=5), st.lists(RULE, max_size=5))


@settings(max_examples=40, deadline=None)
@given(initial=st.lists(RULE, max_size=6), steps=st.lists(STEP, max_size=5))
def test_amendments_agree_with_a_set_model(
    initial: list[RuleSpec], steps: list[tuple[list[RuleSpec], list[RuleSpec]]]
) -> None:
    store = open_store("sqlite://", migrate=True)
    service = PolicyService(store)
    service.add_jurisdiction("xa", "A")
    authority = service.add_authority("Court", "court", "xa")
    order = service.add_order(authority.id, "t", "l", "r", "court-order", "nxdomain", initial)
    model = {(r.kind, r.value) for r in initial}
    expected_size = 2  # the jurisdiction's entry and the order's
    for add, remove in steps:
        removing = {(r.kind, r.value) for r in remove}
        after = (model - removing) | ({(r.kind, r.value) for r in add} - removing - model)
        service.amend_order(order.id, add=add, remove=remove, reason="step")
        expected_size += after != model
        model = after
    stored = PolicyReader(service.store).order_rules(order.id)
    assert {(r.kind, r.value) for r in stored} == model
    assert store.log_size() == expected_size
    [compiled] = load_policy(store)[0]
    assert entries.rules_digest(compiled.rules) == entries.rules_digest(
        RuleSpec(k, v) for k, v in model
    )
