"""The jobs' schedule: upkeep at once and every interval, witness retries on their own
interval, a failing job logged and the others run, stop obeyed; and each job's work."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from clearwall.config import Config, FederationConfig, LedgerConfig, WitnessEndpoint
from clearwall.jobs import runner
from clearwall.jobs.runner import Jobs, run_forever, run_once
from clearwall.jobs.schedule import run_schedule
from clearwall.ledger.signing import create_key_file
from clearwall.store import PolicyService, open_store

WITNESS = WitnessEndpoint("http://127.0.0.1:9", "w.example+00000000+AAAA")


class Clock:
    """A clock the test moves; every wait of the schedule moves it to the wait's end."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Steps(threading.Event):
    """A stop event whose waits advance the clock, and which stops after ``limit`` waits."""

    def __init__(self, clock: Clock, limit: int) -> None:
        super().__init__()
        self.clock, self.limit, self.waits = clock, limit, 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.clock.now += timeout or 0.0
        if self.waits >= self.limit:
            self.set()
        return self.is_set()


@pytest.fixture
def jobs(sqlite_url: str, tmp_path: Path) -> Jobs:
    """Jobs over a fresh store with its ledger key."""
    ledger = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log")
    create_key_file(ledger.key_file, ledger.origin)
    open_store(sqlite_url, migrate=True).dispose()
    return Jobs.open(Config(ledger=ledger), sqlite_url)


@pytest.mark.parametrize(
    ("witnesses", "retry", "ran"),
    [
        (
            (),
            30.0,
            [
                (0, "expire"),
                (0, "refresh"),
                (0, "mirrors"),
                (40, "mirrors"),
                (60, "expire"),
                (60, "refresh"),
                (80, "mirrors"),
            ],
        ),
        (
            (WITNESS,),
            45.0,
            [
                (0, "expire"),
                (0, "refresh"),
                (0, "mirrors"),
                (40, "mirrors"),
                (45, "witnesses"),
                (60, "expire"),
                (60, "refresh"),
                (80, "mirrors"),
                (90, "witnesses"),
            ],
        ),
    ],
    ids=["no witnesses", "witnesses"],
)
def test_the_schedule(
    jobs: Jobs,
    monkeypatch: pytest.MonkeyPatch,
    witnesses: tuple[WitnessEndpoint, ...],
    retry: float,
    ran: list[tuple[int, str]],
) -> None:
    clock = Clock()
    seen: list[tuple[int, str]] = []
    for name in runner.JOBS:
        monkeypatch.setitem(
            runner.JOBS, name, lambda _j, n=name: seen.append((int(clock.now), n)) or ""
        )
    ledger = dataclasses.replace(
        jobs.config.ledger, witnesses=witnesses, witness_quorum=len(witnesses), witness_retry=retry
    )
    # [federation] interval 40 s: registries are synced on their own schedule
    config = dataclasses.replace(
        jobs.config, ledger=ledger, federation=FederationConfig(interval=40.0)
    )
    jobs = dataclasses.replace(jobs, config=config)
    run_forever(jobs, Steps(clock, len({t for t, _ in ran})), upkeep_every=60.0, clock=clock)
    assert seen == ran


def test_a_failing_job_is_logged_and_the_others_run(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_jobs: Jobs) -> str:
        raise RuntimeError("database went away")

    ran: list[str] = []
    monkeypatch.setitem(runner.JOBS, "expire", broken)
    monkeypatch.setitem(runner.JOBS, "refresh", lambda _j: ran.append("refresh") or "refreshed 2")
    with caplog.at_level(logging.INFO, "clearwall.jobs"):
        run_forever(jobs, Steps(Clock(), 1))
    assert ran == ["refresh"]
    assert "job expire failed: database went away" in caplog.text
    assert "job refresh: refreshed 2" in caplog.text


def test_stop_ends_the_schedule_at_once(jobs: Jobs) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=run_forever, args=(jobs, stop), kwargs={"upkeep_every": 3600})
    worker.start()
    stop.set()
    worker.join(30)  # the hour-long wait is cut short
    assert not worker.is_alive()


def test_each_job_says_what_it_did(jobs: Jobs) -> None:
    service = PolicyService(jobs.service.store)
    service.add_jurisdiction("xa", "A")
    court = service.add_authority("Court", "court", "xa")
    old = service.add_order(
        court.id, "Old", "Act", "R1", "malware", "nxdomain", [],
        effective_from="2020-01-01", expires=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
    )  # fmt: skip
    assert run_once(jobs, runner.JOBS) == [
        ("expire", f"expired 1 order(s): {old.id}"),
        ("refresh", "refreshed 0 subscription(s)"),
        ("witnesses", "no witnesses configured"),
        ("mirrors", "no mirrors"),
    ]
    assert jobs.tlog.publish() == jobs.service.store.log_size()  # each write was published


def test_a_node_without_the_key_leaves_the_witnesses_to_the_signer(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Its checkpoint is the signer's note from the store; cosignatures it attached
    locally would make its public log differ from every other node's."""
    signer = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log")
    vkey = create_key_file(signer.key_path(), signer.origin)
    open_store(sqlite_url, migrate=True).dispose()
    Jobs.open(Config(ledger=signer), sqlite_url).tlog.sync()
    follower = LedgerConfig(
        key_file=tmp_path / "none.key",
        tiles_dir=tmp_path / "log2",
        vkey=vkey,
        witnesses=(WITNESS,),
        witness_quorum=1,
    )
    jobs = Jobs.open(Config(ledger=follower), sqlite_url)
    jobs.tlog.sync()
    before = jobs.tlog.dir.read_checkpoint()
    assert runner.witnesses(jobs) == "this node holds no ledger key: the signer asks the witnesses"
    assert jobs.tlog.dir.read_checkpoint() == before


def test_upkeep_and_mirrors_stay_one_batch_when_runs_take_time(jobs: Jobs) -> None:
    """With equal intervals (60 s each by default) the upkeep and the mirrors are due
    together every time, so ``serve`` starts one run a minute, not two: each interval
    counts from the batch's start, not from the end of a run that took a while."""
    clock = Clock()
    batches: list[tuple[int, list[str]]] = []

    def run(names: Sequence[str]) -> None:
        batches.append((int(clock.now), list(names)))
        clock.now += 1.5  # a run's start-up and work

    config = dataclasses.replace(jobs.config, federation=FederationConfig(interval=60.0))
    run_schedule(config, run, Steps(clock, 4), upkeep_every=60.0, clock=clock)
    assert batches == [(t, ["expire", "refresh", "mirrors"]) for t in (0, 60, 120, 180)]


def test_a_sync_longer_than_its_interval_is_not_followed_by_another_at_once(
    jobs: Jobs,
) -> None:
    clock = Clock()
    started: list[int] = []

    def run(names: Sequence[str]) -> None:
        if "mirrors" in names:
            started.append(int(clock.now))
            clock.now += 50.0  # a slow registry

    config = dataclasses.replace(jobs.config, federation=FederationConfig(interval=40.0))
    run_schedule(config, run, Steps(clock, 6), upkeep_every=600.0, clock=clock)
    assert started[:3] == [0, 90, 180]  # each 40 s after the previous one ended
