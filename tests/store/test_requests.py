"""Cross-border requests on real SQLite and PostgreSQL: filing, deciding, withdrawing.

A request never blocks anything by itself and never lets the sender act in the
receiving jurisdiction: only an order of the receiver's own authority, on its own legal
basis, changes what the receiver's clients get, and every step is a log entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import delete, update

from clearwall.errors import Conflict, ScopeError, StoreError
from clearwall.ledger import entries
from clearwall.ledger.logstate import fold
from clearwall.model import Decision, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store, schema
from clearwall.store.loader import build_snapshot
from clearwall.store.logmatch import match_log
from clearwall.store.reader import PolicyReader
from clearwall.store.records import RequestStatus

COURT_A, REGULATOR_B, OPERATOR_A = 1, 2, 3
SCOPE = ScopeError
NAMES = [RuleSpec(RuleKind.SUBTREE, "phish.example"), RuleSpec(RuleKind.EXACT, "c2.example")]


def file(svc: PolicyService, **kw: Any) -> Any:
    """File a request from xa (Court A) to xb with sensible defaults."""
    args: dict[str, Any] = {
        "authority_id": COURT_A,
        "to_jurisdiction": "xb",
        "ask": "block",
        "category": "phishing",
        "legal_basis": "Act A s. 9",
        "reference": "A-REQ-1",
        "rules": NAMES,
    }
    args.update(kw)
    return svc.file_request(**args)


def verdicts(store: Store) -> dict[tuple[str, str], Decision]:
    """What every jurisdiction's clients get for the requested names."""
    snap = build_snapshot(store)
    at = dt.datetime.now(dt.UTC).timestamp() + 1
    return {
        (j, n): snap.match(n, j, at).decision
        for j in ("xa", "xb")
        for n in ("www.phish.example", "c2.example")
    }


def events(store: Store) -> list[entries.Event]:
    """Every log entry as its event."""
    return [entries.parse(e.data) for e in store.log_entries()]


def test_filing_is_logged_and_blocks_nothing(service: PolicyService, store: Store) -> None:
    before = verdicts(store)
    request = file(service)
    assert request.status is RequestStatus.OPEN
    assert (request.from_jurisdiction, request.to_jurisdiction) == ("xa", "xb")
    assert request.rules == ("exact c2.example", "subtree phish.example")
    filed = events(store)[-1]
    assert isinstance(filed, entries.RequestFiled)
    assert (filed.request_id, filed.to, filed.authority.jurisdiction) == (request.id, "xb", "xa")
    assert filed.rules == entries.RuleSet.of(NAMES)
    assert request.filed_log_index == len(events(store)) - 1
    assert verdicts(store) == before  # a request is no order
    assert all(d is Decision.ALLOW for d in before.values())


def test_accepting_makes_an_order_of_the_receiver_and_cites_the_request(
    service: PolicyService, store: Store
) -> None:
    request = file(service)
    closed, order = service.accept_request(
        request.id, REGULATOR_B, "Act B art. 4", "B-ORD-7", actor_jurisdiction="xb"
    )
    assert closed.status is RequestStatus.ACCEPTED
    assert closed.order_id == order.id and closed.decided_by == REGULATOR_B
    assert order.authority_id == REGULATOR_B and order.legal_basis == "Act B art. 4"
    assert not order.all_jurisdictions
    *_, published, decided = events(store)
    assert isinstance(published, entries.OrderPublished) and published.order.id == order.id
    assert isinstance(decided, entries.RequestDecided)
    assert (decided.outcome, decided.order, decided.request_id) == (
        entries.RequestOutcome.ACCEPTED,
        order.id,
        request.id,
    )
    state = fold((e.index, e.data) for e in store.log_entries()).requests[request.id]
    assert state.filed is not None and state.decided is not None
    now = verdicts(store)
    # Y's clients are blocked by Y's order; X's clients are untouched.
    assert now[("xb", "www.phish.example")] is Decision.BLOCK
    assert now[("xb", "c2.example")] is Decision.BLOCK
    assert now[("xa", "www.phish.example")] is Decision.ALLOW
    assert [r.id for r in PolicyReader(store).requests(order_id=order.id)] == [request.id]


@pytest.mark.parametrize(
    ("step", "error"),
    [
        # the sender may not decide for the receiver, nor file in another's name
        (lambda s, r: s.accept_request(r, COURT_A, "b", "r", actor_jurisdiction="xa"), ScopeError),
        (lambda s, r: s.accept_request(r, REGULATOR_B, "b", "r", actor_jurisdiction="xa"), SCOPE),
        (lambda s, r: s.accept_request(r, OPERATOR_A, "b", "r"), ScopeError),
        (lambda s, r: s.refuse_request(r, COURT_A, "no", actor_jurisdiction="xa"), ScopeError),
        (lambda s, r: s.refuse_request(r, REGULATOR_B, "no", actor_jurisdiction="xa"), ScopeError),
        (lambda s, r: s.withdraw_request(r, "no", REGULATOR_B, actor_jurisdiction="xb"), SCOPE),
        (lambda s, r: s.withdraw_request(r, "no", actor_jurisdiction="xb"), ScopeError),
        (lambda s, r: file(s, actor_jurisdiction="xb"), ScopeError),
        (lambda s, r: file(s, to_jurisdiction="xa"), StoreError),
        (lambda s, r: file(s, rules=[]), StoreError),
        (lambda s, r: file(s, legal_basis=" "), StoreError),
        (lambda s, r: s.refuse_request(r, REGULATOR_B, " "), StoreError),
    ],
    ids=[
        "sender-accepts",
        "sender-token-names-receiver",
        "operator-names-sender-authority",
        "sender-refuses",
        "sender-token-refuses",
        "receiver-withdraws",
        "receiver-token-withdraws",
        "files-in-another-name",
        "to-itself",
        "no-names",
        "no-basis",
        "refusal-without-reason",
    ],
)  # fmt: skip
def test_no_path_lets_one_jurisdiction_act_for_another(
    service: PolicyService, store: Store, step: Any, error: type[Exception]
) -> None:
    request = file(service)
    before = (verdicts(store), store.log_size())
    with pytest.raises(error):
        step(service, request.id)
    assert (verdicts(store), store.log_size()) == before
    assert PolicyReader(store).request(request.id).status is RequestStatus.OPEN


@pytest.mark.parametrize(
    ("close", "status", "outcome"),
    [
        (
            lambda s, r: s.refuse_request(r, REGULATOR_B, "not unlawful here", "xb"),
            RequestStatus.REFUSED,
            entries.RequestOutcome.REFUSED,
        ),
        (
            lambda s, r: s.withdraw_request(r, "site gone", actor_jurisdiction="xa"),
            RequestStatus.WITHDRAWN,
            entries.RequestOutcome.WITHDRAWN,
        ),
    ],
    ids=["refused", "withdrawn"],
)
def test_refusal_and_withdrawal_are_logged_once_and_change_no_policy(
    service: PolicyService,
    store: Store,
    close: Any,
    status: RequestStatus,
    outcome: entries.RequestOutcome,
) -> None:
    request = file(service)
    before = verdicts(store)
    closed = close(service, request.id)
    assert closed.status is status and closed.decision
    last = events(store)[-1]
    assert isinstance(last, entries.RequestDecided) and last.outcome is outcome
    assert last.order is None
    assert verdicts(store) == before
    size = store.log_size()
    with pytest.raises(Conflict):
        service.accept_request(request.id, REGULATOR_B, "b", "r")
    assert store.log_size() == size


def test_accepting_a_lift_request_is_an_exception_order(
    service: PolicyService, store: Store
) -> None:
    security = service.add_order(
        OPERATOR_A,
        "Shared phishing feed",
        "Operator terms s. 2",
        "FEED-1",
        "phishing",
        "nxdomain",
        NAMES,
        all_jurisdictions=True,
    )
    assert verdicts(store)[("xb", "c2.example")] is Decision.BLOCK
    request = file(
        service, authority_id=OPERATOR_A, ask="lift", rules=NAMES[1:], reference="A-LIFT-1"
    )
    _, order = service.accept_request(request.id, REGULATOR_B, "Act B art. 5", "B-EXC-1")
    assert {r.kind for r in PolicyReader(store).order_rules(order.id)} == {RuleKind.ALLOW_EXACT}
    now = verdicts(store)
    assert now[("xb", "c2.example")] is Decision.ALLOW  # excepted for xb's clients only
    assert now[("xa", "c2.example")] is Decision.BLOCK
    assert now[("xb", "www.phish.example")] is Decision.BLOCK
    assert security.all_jurisdictions


@pytest.mark.parametrize(
    ("refused", "tamper", "problem"),
    [
        (False, update(schema.requests).values(status="refused"), "no decision is on the log"),
        (False, update(schema.requests).values(legal_basis="Other Act"), "stored filing differs"),
        (False, update(schema.requests).values(rules="exact x.example"), "stored filing differs"),
        (True, update(schema.requests).values(status="open"), "stored decision differs"),
        (True, update(schema.requests).values(decision="other"), "stored decision differs"),
        (False, delete(schema.requests), "on the log (entry"),
    ],
    ids=["decided-behind", "basis-edited", "names-edited", "reopened", "reason-edited", "deleted"],
)
def test_ledger_verify_catches_a_request_edited_behind_the_logs_back(
    service: PolicyService, store: Store, refused: bool, tamper: Any, problem: str
) -> None:
    request = file(service)
    if refused:
        service.refuse_request(request.id, REGULATOR_B, "lawful here")
    state = fold((e.index, e.data) for e in store.log_entries())
    assert match_log(store, state).problems == [] and match_log(store, state).requests == 1
    with store.write() as conn:
        conn.execute(tamper)
    problems = match_log(store, state).problems
    assert len(problems) == 1 and problem in problems[0], problems
