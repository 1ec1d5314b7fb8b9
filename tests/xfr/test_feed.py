"""The feed follows the store's log (SQLite and PostgreSQL): the first read takes the whole
enforceable policy, later ones only the orders new entries name, keeping the other
orders' objects; each version is dated by its last entry."""

from __future__ import annotations

import datetime as dt

from clearwall.model import RuleKind
from clearwall.policy.compiler import epoch
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store
from clearwall.store.loader import load_policy
from clearwall.xfr.feed import PolicyFeed

from .conftest import COURT, OPERATOR, publish


def test_feed_reads_each_version_incrementally(store_url: str) -> None:
    store = open_store(store_url, migrate=True)
    try:
        service = PolicyService(store)
        feed = PolicyFeed(store)
        empty = feed.read()
        assert (empty.tree_size, empty.at, empty.orders, empty.jurisdictions) == (0, 0.0, (), ())
        service.add_jurisdiction("xa", "A", ["127.0.0.0/8"])  # a log entry (jurisdiction-set)
        service.add_authority("Court", "court", "xa", ["mailto:c@a.example"])
        service.add_authority("Security", "operator", "xa", ["tel:+1000"])
        declared = feed.read()
        assert declared.tree_size == 1 and [j.code for j in declared.jurisdictions] == ["xa"]

        court = publish(service, COURT, "court-1", ["subtree bad.example"])
        publish(service, OPERATOR, "sec-1", ["exact malware.example"])
        first = feed.read()
        assert first.tree_size == 3 == store.log_size()
        last = store.log_entry_time(2)
        assert last is not None
        assert first.at == epoch(last if last.tzinfo else last.replace(tzinfo=dt.UTC))
        assert feed.read() is first  # the log did not grow: the same version

        service.amend_order(court, add=[RuleSpec(RuleKind.EXACT, "new.example")], reason="x")
        second = feed.read()
        assert second.tree_size == 4
        by_id = {o.order.id: o for o in second.orders}
        unchanged = next(o for o in first.orders if o.order.id != court)
        assert by_id[unchanged.order.id] is unchanged  # read again only if named
        assert RuleSpec(RuleKind.EXACT, "new.example") in by_id[court].rules

        service.revoke_order(court, "lifted")
        third = feed.read()
        assert [o.order.id for o in third.orders] == [unchanged.order.id]
        assert [o.order.id for o in third.orders] == [o.order.id for o in load_policy(store)[0]]
    finally:
        store.dispose()
