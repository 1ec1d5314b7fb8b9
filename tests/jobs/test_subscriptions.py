"""The refresh job: due subscriptions fetched, their orders' rules made equal to the list,
public addresses only unless the operator allows internal ones."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from clearwall.config import Config, LedgerConfig, WebConfig
from clearwall.errors import FormatError
from clearwall.jobs.runner import Jobs, refresh
from clearwall.jobs.subscriptions import fetch, refresh_due
from clearwall.ledger.signing import create_key_file
from clearwall.store import open_store
from clearwall.store.reader import PolicyReader


@pytest.fixture
def list_url(list_server: tuple[str, Path]) -> str:
    """The URL of the list served on loopback (an internal address)."""
    return list_server[0]


@pytest.fixture
def jobs(store_url: str, tmp_path: Path) -> Jobs:
    """Jobs over a store with one order (``keep.example``), on SQLite and PostgreSQL."""
    ledger = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log")
    create_key_file(ledger.key_file, ledger.origin)
    open_store(store_url, migrate=True).dispose()
    jobs = Jobs.open(Config(ledger=ledger), store_url)
    jobs.service.add_jurisdiction("xa", "A")
    court = jobs.service.add_authority("Court", "court", "xa")
    jobs.service.add_order(
        court.id, "T", "L", "R", "malware", "nxdomain", [], effective_from="2020-01-01"
    )
    return jobs


def rules(jobs: Jobs) -> set[str]:
    """The names the one order blocks."""
    return {r.value for r in PolicyReader(jobs.service.store).order_rules(1)}


@pytest.mark.parametrize(
    ("internal", "status", "after"),
    [
        (False, "failed: ", set()),  # by default: public addresses only
        (True, "ok: 2 rules, +2 -0", {"sub-one.example", "sub-two.example"}),
    ],
    ids=["public only", "internal allowed"],
)
def test_the_refresh_job_reads_internal_sources_only_when_allowed(
    jobs: Jobs, list_url: str, internal: bool, status: str, after: set[str]
) -> None:
    sub = jobs.service.add_subscription(1, list_url, "auto", 3600)
    web = WebConfig(subscriptions_fetch_internal=internal)
    jobs = dataclasses.replace(jobs, config=dataclasses.replace(jobs.config, web=web))
    assert refresh(jobs) == f"refreshed 1 subscription(s): {sub.id}"
    [done] = PolicyReader(jobs.service.store).subscriptions(1)
    assert done.last_status.startswith(status)
    assert rules(jobs) == after


def test_a_subscription_is_refreshed_when_due(jobs: Jobs, list_url: str) -> None:
    sub = jobs.service.add_subscription(1, list_url, "auto", 3600)
    assert refresh_due(jobs.service, public_only=False) == [sub.id]
    assert rules(jobs) == {"sub-one.example", "sub-two.example"}
    assert refresh_due(jobs.service, public_only=False) == []  # not due again for an hour
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert refresh_due(jobs.service, public_only=False, now=later) == [sub.id]


def test_public_only_fetch_refuses_internal_addresses(list_url: str) -> None:
    assert "sub-one.example" in fetch(list_url)  # the operator's refresh may
    with pytest.raises(FormatError, match="not a public address"):
        fetch(list_url, public_only=True)
