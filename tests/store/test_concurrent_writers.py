"""Two writers at once on one PostgreSQL store never fork the log: separate processes
(two gateways' CLIs, say) adding orders as fast as they can give one chain of entries,
and ``clearwall ledger verify`` finds nothing wrong."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.ledger.signing import create_key_file
from clearwall.store import PolicyService, open_store

pytestmark = pytest.mark.timeout(600)
ORDERS = 40  # per writer

WRITER = """
import sys
from clearwall.config import LedgerConfig
from clearwall.ledger.log import TransparencyLog
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store

url, key, tiles, tag, count = sys.argv[1:]
store = open_store(url)
sign = sys.argv[2] != "-"
tlog = TransparencyLog(store, LedgerConfig(key_file=key, tiles_dir=tiles)) if sign else None
service = PolicyService(store, after_commit=tlog.sync if tlog else None)
for i in range(int(count)):
    service.add_order(
        1, "Order", "Act s.1", f"{tag}-{i}", "court-order", "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, f"{tag}-{i}.example")],
    )
store.dispose()
"""


@pytest.mark.parametrize("signers", [2, 1], ids=["both-sync", "one-signer"])
def test_two_writers_at_once_make_one_chain(pg_url: str, tmp_path: Path, signers: int) -> None:
    from sqlalchemy.engine import make_url

    key, tiles = tmp_path / "ledger.key", tmp_path / "log"
    create_key_file(key, LedgerConfig().origin)
    service = PolicyService(open_store(pg_url, migrate=True))
    service.add_jurisdiction("xa", "A", ["127.0.0.0/8"])
    service.add_authority("Court A", "court", "xa")
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                pg_url,
                str(key) if n < signers else "-",  # the other writes without syncing
                str(tiles),
                f"w{n}",
                str(ORDERS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(2)
    ]
    for proc in writers:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out

    store = service.store
    entries = store.log_entries()
    assert [e.index for e in entries] == list(range(1 + 2 * ORDERS))  # xa, then one chain, no gap
    assert len({e.data for e in entries}) == len(entries)
    writer_of = [b'"w1-' in e.data for e in entries[1:]]
    switches = sum(a != b for a, b in itertools.pairwise(writer_of))
    print(f"the writers took turns {switches} times")  # they did write at once
    store.dispose()
    config = tmp_path / "cw.toml"
    config.write_text(f'[ledger]\nkey_file = "{key}"\ntiles_dir = "{tiles}"\n')
    assert make_url(pg_url).get_backend_name() == "postgresql"
    for command in (["ledger", "sync"], ["ledger", "verify"]):
        done = subprocess.run(
            [sys.executable, "-m", "clearwall", *command, "--db", pg_url, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok"), done.stdout
