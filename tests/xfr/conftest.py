"""Fixtures for the primary's tests: a store with a policy, and a primary running in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clearwall.config import Config, LedgerConfig, load_config
from clearwall.layout import resolve_ledger
from clearwall.ledger.signing import create_key_file
from clearwall.model import Action, Category, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store, open_store
from clearwall.xfr.primary import Primary

COURT = 1  # authority ids in the ``service`` fixture's store
OPERATOR = 2


def with_ledger_key(url: str) -> None:
    """What ``clearwall init`` makes beside a store besides its tables: the ledger key (a
    primary, as a gateway, publishes what it serves and refuses to start without it)."""
    ledger = resolve_ledger(LedgerConfig(), url)
    create_key_file(ledger.key_path(), ledger.origin)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    """A freshly migrated SQLite store with its ledger key."""
    with_ledger_key(sqlite_url)
    s = open_store(sqlite_url, migrate=True)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def service(store: Store) -> PolicyService:
    """The write path over ``store``: jurisdiction xa, a court and an operator in it."""
    svc = PolicyService(store)
    svc.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8"])
    svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    svc.add_authority("Operator security", "operator", "xa", ["tel:+10000000000"])
    return svc


def publish(
    service: PolicyService,
    authority: int,
    reference: str,
    rules: list[str],
    action: Action = Action.NXDOMAIN,
) -> int:
    """Publish an order of ``authority`` with rules given as ``kind value`` texts; its id."""
    category = Category.COURT_ORDER if authority == COURT else Category.MALWARE
    specs = [RuleSpec(RuleKind(text.split()[0]), text.split()[1]) for text in rules]
    order = service.add_order(
        authority, reference, "test basis", reference, category, action, specs
    )
    return order.id


class RunningPrimary:
    """A ``Primary`` serving in a thread of its own (dnspython's clients block)."""

    def __init__(self, config: Config, store: Store) -> None:
        self.primary = Primary(config, store)
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="xfr-primary", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            task = asyncio.ensure_future(self.primary.run(self._stop))
            while not self.primary.server.addresses and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                await task  # it failed to start: raise here, before start() looks
            self._ready.set()
            await task

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> RunningPrimary:
        self.thread.start()
        assert self._ready.wait(30), "the primary did not start"
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return self.primary.server.addresses[0][1]

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the primary's loop and return its result (awaited if a coroutine)."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(60)

    def serial(self) -> int:
        history = next(iter(self.primary.zones.values())).history
        return history.serial

    def wait_serial(self, serial: int, timeout: float = 30) -> None:
        """Wait until the primary serves ``serial``."""
        import time

        deadline = time.monotonic() + timeout
        while self.serial() != serial:
            assert time.monotonic() < deadline, f"serial {serial} not reached: {self.serial()}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


@pytest.fixture
def primary_factory(store: Store, tmp_path: Path) -> Iterator[Callable[..., RunningPrimary]]:
    """Start primaries over ``store``: ``factory(**xfr_options)``, stopped at the end."""
    started: list[RunningPrimary] = []

    def factory(**xfr: Any) -> RunningPrimary:
        options: dict[str, Any] = {
            "listen": ["127.0.0.1:0"],
            "keys_file": str(tmp_path / "xfr.keys"),
            "reload_interval": 0.05,
        }
        options.update(xfr)
        config = load_config(overrides={"xfr": options})
        running = RunningPrimary(config, store).start()
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


def fleet_config(cwd: Path, *args: str) -> str:
    """What ``clearwall fleet config ARGS`` prints (run as a real command in ``cwd``)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "clearwall", "fleet", "config", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
