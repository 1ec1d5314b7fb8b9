"""The log asks real witnesses (``clearwall witness serve`` processes) to cosign its checkpoints.

Three witnesses, quorum 2: the log keeps publishing witnessed checkpoints when one is
down, reports the lagging one, and attaches its cosignature when it is back. A log that
forks (two different trees of the same size, sent to different witnesses) is refused by
the witness that saw the other tree, which keeps the proof; a reader holding the forked
checkpoint is refused, with a message naming the fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from clearwall.config import LedgerConfig, load_config
from clearwall.ledger import witnessing
from clearwall.ledger.checkpoint import parse_checkpoint
from clearwall.ledger.cosignature import parse_cosigner_vkey
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.note import split_note
from clearwall.ledger.prover import NameProver
from clearwall.ledger.signing import create_key_file
from clearwall.store import PolicyService, Store, open_store
from witness.processes import WitnessProcess, clearwall

from .conftest import T0, rules

ORIGIN = "clearwall.example/log"


@dataclass
class Log:
    """A store and its witnessed log."""

    store: Store
    service: PolicyService
    tlog: TransparencyLog
    config_file: Path
    vkey: str


def open_log(
    home: Path, key: Path, witnesses: list[WitnessProcess], quorum: int, *, create: bool
) -> Log:
    """A SQLite store in ``home`` whose log is cosigned by ``witnesses``."""
    home.mkdir(parents=True, exist_ok=True)
    if create:
        create_key_file(key, ORIGIN)
    table = ", ".join(f'{{ url = "{w.url}", vkey = "{w.vkey}" }}' for w in witnesses)
    config_file = home / "clearwall.toml"
    url = f"sqlite:///{home / 'clearwall.db'}"
    config_file.write_text(
        f'[store]\nurl = "{url}"\n[ledger]\nkey_file = "{key}"\ntiles_dir = "{home / "log"}"\n'
        f'origin = "{ORIGIN}"\nwitnesses = [{table}]\nwitness_quorum = {quorum}\n'
        "witness_timeout = 3.0\n"
    )
    cfg: LedgerConfig = load_config(config_file).ledger
    store = open_store(url, migrate=True)
    tlog = TransparencyLog(store, cfg)
    return Log(store, PolicyService(store, after_commit=tlog.sync), tlog, config_file, "")


def publish(log: Log, title: str, *names: str) -> None:
    """Jurisdiction xa and its court (first time), then one order blocking ``names``."""
    svc = log.service
    if not svc.store.log_size():
        svc.add_jurisdiction("xa", "Demo Republic A", ["10.0.0.0/8"])
        svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    svc.add_order(
        1,
        title,
        "Law 1 s.2",
        title,
        "court-order",
        "nxdomain",
        rules(*[f"subtree {n}" for n in names]),
        effective_from=T0,
    )


def verify_proof(home: Path, bundle: dict, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    path = home / "bundle.json"
    path.write_text(json.dumps(bundle))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    return subprocess.run(
        [sys.executable, "-m", "clearwall", "ledger", "verify-proof", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[WitnessProcess]]:
    """Three witnesses (keys made, not started); all stopped at the end."""
    ws = [WitnessProcess(tmp_path / f"w{i}", f"w{i}.example/witness") for i in (1, 2, 3)]
    try:
        yield ws
    finally:
        for w in ws:
            w.stop()


def test_three_witnesses_quorum_two_one_down(tmp_path: Path, trio: list[WitnessProcess]) -> None:
    key = tmp_path / "ledger.key"
    log = open_log(tmp_path / "log", key, trio, 2, create=True)
    vkey = TransparencyLog(log.store, log.tlog.config).verifier.vkey
    for w in trio:
        w.add_log(ORIGIN, vkey)
        w.start()
    publish(log, "Gambling", "casino.example")
    st = witnessing.status(log.tlog)
    assert st.cosignatures == 3 and st.witnessed

    trio[2].stop()
    publish(log, "Piracy", "films.example")  # the log keeps publishing
    st = witnessing.status(log.tlog)
    assert st.checkpoint is not None and st.checkpoint.size == log.store.log_size()
    assert st.cosignatures == 2 and st.witnessed
    (lagging,) = st.lagging
    assert lagging.name == "w3.example/witness" and lagging.lag == 1
    assert "Connect" in lagging.error and lagging.failures == 1

    # Metrics say who lags.
    registry = CollectorRegistry()
    registry.register(witnessing.WitnessMetrics(log.tlog))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'clearwall_witness_cosigned{witness="w3.example/witness"} 0.0' in text
    assert 'clearwall_witness_lag_entries{witness="w3.example/witness"} 1.0' in text
    assert "clearwall_log_witnessed 1.0" in text

    # A reader requiring two of the three accepts the proof; requiring all three refuses.
    bundle = NameProver(log.tlog).prove("www.films.example", "xa")
    keys = [a for w in trio for a in ("--witness", w.vkey)]
    ok = verify_proof(tmp_path, bundle, "--key", vkey, *keys, "--quorum", "2")
    assert ok.returncode == 0, ok.stderr
    assert "blocked for xa" in ok.stdout and "cosigned by 2 of 3 witnesses" in ok.stdout
    bad = verify_proof(tmp_path, bundle, "--key", vkey, *keys, "--quorum", "3")
    assert bad.returncode == 1
    assert "2 valid witness cosignature(s), 3 required" in bad.stderr
    assert "w3.example/witness+" in bad.stderr and "no cosignature" in bad.stderr

    # The portal's log page shows each cosignature and its witness, and who lags; the web
    # app's /metrics says the same.
    from fastapi.testclient import TestClient

    from clearwall.web.app import create_app

    app = create_app(load_config(log.config_file), log.store.url)
    with TestClient(app) as web:
        page = web.get("/log").text
        for w, line in zip(trio[:2], split_note(log.tlog.checkpoint_note())[1][1:], strict=True):
            assert w.vkey in page and line.line() in page
        assert "witnessed" in page and "2 of the 2 cosignatures required" in page
        assert "missing" in page and "1 entries behind (cosigned size" in page
        assert "ConnectError" in page
        metrics = web.get("/metrics").text
        assert 'clearwall_witness_lag_entries{witness="w3.example/witness"} 1.0' in metrics
        assert web.get("/log/checkpoint").text == log.tlog.checkpoint_note()

    # The witness comes back: the retry attaches its cosignature to the published note.
    trio[2].start()
    assert witnessing.retry(log.tlog) == 1
    # ... and to the store's copy, which nodes without the key serve (docs/cluster.md).
    stored = log.store.latest_checkpoint()
    assert stored is not None and stored.note == log.tlog.checkpoint_note()
    st = witnessing.status(log.tlog)
    assert st.cosignatures == 3 and not st.lagging and st.witnesses[2].error == ""
    note = log.tlog.checkpoint_note()
    assert [s.name for s in split_note(note)[1]] == [ORIGIN] + [w.name for w in trio]
    # /log/checkpoint serves exactly that note.
    assert parse_checkpoint(split_note(note)[0]).size == log.store.log_size()
    log.store.dispose()


def test_a_fork_is_refused_and_named(tmp_path: Path, trio: list[WitnessProcess]) -> None:
    key = tmp_path / "ledger.key"
    honest = open_log(tmp_path / "honest", key, trio, 2, create=True)
    vkey = TransparencyLog(honest.store, honest.tlog.config).verifier.vkey
    w1, w2, w3 = trio
    for w in trio:
        w.add_log(ORIGIN, vkey)
    w1.start()
    w2.start()
    publish(honest, "Gambling", "casino.example")  # w3 is down: it never sees this tree
    size = honest.store.log_size()
    assert witnessing.status(honest.tlog).cosignatures == 2

    # The operator forks: the same key signs another history of the same size, which it
    # shows to w3 (that never saw the first) and tries on w1.
    w3.start()
    forked = open_log(tmp_path / "forked", key, [w1, w3], 1, create=False)
    publish(forked, "Gambling", "casino.example", "news.example")  # also blocks a newspaper
    assert forked.store.log_size() == size
    st = witnessing.status(forked.tlog)
    assert [w.cosigned for w in st.witnesses] == [False, True]  # only w3 cosigned
    assert "HTTP 422" in st.witnesses[0].error

    # w1 saw the other tree: the forked checkpoint from size 0 gets 409 and its size.
    fork_note = forked.tlog.checkpoint_note()
    resp = httpx.post(f"{w1.url}/add-checkpoint", content=f"old 0\n\n{fork_note}", trust_env=False)
    assert resp.status_code == 409 and resp.text == f"{size}\n"
    assert resp.headers["content-type"].startswith("text/x.tlog.size")
    evidence = clearwall("witness", "evidence", "--db", w1.db, cwd=w1.home).stdout
    assert "fork: a different tree of the cosigned size" in evidence
    assert "HTTP 409" in evidence and "HTTP 422" in evidence

    # A reader given the forked proof bundle refuses it, and the witnesses' URLs let it
    # name the fork; offline it names the missing cosignatures.
    bundle = NameProver(forked.tlog).prove("www.news.example", "xa")
    assert bundle["conclusion"]["decision"] == "block"
    offline = [a for w in trio for a in ("--witness", w.vkey)]
    online = [a for w in trio for a in ("--witness", f"{w.vkey} {w.url}")]
    bad = verify_proof(tmp_path, bundle, "--key", vkey, *offline, "--quorum", "2")
    assert bad.returncode == 1
    assert "1 valid witness cosignature(s), 2 required" in bad.stderr
    assert "w1.example/witness+" in bad.stderr and "w2.example/witness+" in bad.stderr
    named = verify_proof(tmp_path, bundle, "--key", vkey, *online, "--quorum", "2")
    assert named.returncode == 1
    assert f"FORK: w1.example/witness cosigned another tree of the same size {size}" in named.stderr
    assert "FORK: w2.example/witness" in named.stderr
    # The honest proof passes the same check.
    good = NameProver(honest.tlog).prove("www.casino.example", "xa")
    ok = verify_proof(tmp_path, good, "--key", vkey, *online, "--quorum", "2")
    assert ok.returncode == 0, ok.stderr
    assert parse_cosigner_vkey(w1.vkey).name == "w1.example/witness"
    honest.store.dispose()
    forked.store.dispose()
