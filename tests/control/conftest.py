"""Fixtures of the control plane's tests: a store a gateway can compile from."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.layout import resolve_ledger
from clearwall.ledger.signing import create_key_file
from clearwall.store.db import open_store


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store with its ledger key beside it, as ``clearwall init`` makes it (a gateway
    publishes the log before it enforces a policy)."""
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    open_store(url, migrate=True).engine.dispose()
    key = resolve_ledger(LedgerConfig(), url).key_path()
    create_key_file(key, LedgerConfig().origin)
    return url
