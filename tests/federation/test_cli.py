"""``clearwall mirror`` as an operator runs it: add, list, sync, remove."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clearwall.model import OrderStatus
from clearwall.store import open_store
from clearwall.store.reader import PolicyReader
from federation.registries import Registry, mirror_store


def mirror(cwd: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    return subprocess.run(
        [sys.executable, "-m", "clearwall", "mirror", *args, "--db", db],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_add_list_sync_and_remove(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    _, store = mirror_store(tmp_path / "isp")
    db = str(store.engine.url)
    store.dispose()
    try:
        registry.order(["blocked.example"])
        bad = mirror(tmp_path, db, "add", registry.url, "--key", "not a key", "-j", "tt")
        assert bad.returncode == 1 and bad.stderr.startswith("clearwall: error:"), bad.stderr
        unknown = mirror(tmp_path, db, "add", registry.url, "--key", registry.vkey, "-j", "zz")
        assert unknown.returncode == 1 and "zz" in unknown.stderr
        added = mirror(
            tmp_path, db, "add", registry.url + "/log/", "--key", registry.vkey, "-j", "tt"
        )
        assert added.returncode == 0, added.stderr
        again = mirror(tmp_path, db, "add", registry.url, "--key", registry.vkey, "-j", "tt")
        assert again.returncode == 1 and "mirrored already" in again.stderr
        synced = mirror(tmp_path, db, "sync")
        assert synced.returncode == 0 and "1 adoption(s)" in synced.stdout, synced.stderr
        listed = mirror(tmp_path, db, "list").stdout
        assert f"1\t{registry.url}\ttt->tt\tsize 3\tsynced " in listed and listed.rstrip().endswith(
            "ok"
        )
    finally:
        registry.close()
    down = mirror(tmp_path, db, "sync")  # the registry is gone
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1 and "UNREACHABLE" in down.stderr, down.stderr
    assert "unreachable" in mirror(tmp_path, db, "list").stdout
    kept = mirror(tmp_path, db, "remove", "1")
    assert kept.returncode == 1 and "--withdraw" in kept.stderr
    removed = mirror(tmp_path, db, "remove", "1", "--withdraw")
    assert removed.returncode == 0 and "1 adopted order(s) revoked" in removed.stdout
    assert mirror(tmp_path, db, "list").stdout.strip() == "no mirrors"
    store = open_store(db)
    try:
        [order] = PolicyReader(store).orders()
        assert order.status is OrderStatus.REVOKED
    finally:
        store.dispose()
