"""The control plane's version poll and log reads: the standard library on a SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.control.logread import log_size
from clearwall.store.db import open_store


def test_sqlite_version_poll_matches_the_store(store: str) -> None:
    assert log_size(store) == open_store(store).log_size()


def test_sqlite_version_poll_takes_relative_urls(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store URL (sqlite:///var/clearwall.db) is relative
    assert log_size("sqlite:///cw.db") == 0


@pytest.mark.parametrize(
    "url", ["sqlite:///nowhere/x.db", "postgresql://h/db", "sqlite://", "sqlite:///x.db?mode=ro"]
)
def test_anything_else_is_left_to_the_store(url: str) -> None:
    assert log_size(url) is None  # the store opens it, or explains why it cannot


@pytest.mark.parametrize("options", ["", "?timeout=5"])
def test_log_rows_read_with_the_standard_library_are_the_stores(store: str, options: str) -> None:
    from clearwall.control.logread import log_rows
    from clearwall.store import PolicyService

    service = PolicyService(open_store(store))
    service.add_jurisdiction("xa", "A", ["127.0.0.0/8"])
    service.add_authority("Court A", "court", "xa")
    size = service.store.log_size()
    assert size >= 1
    with service.store.read() as conn:
        from clearwall.store.loader import _rows

        expected = list(_rows(conn, size))
    # The file is the one the store's URL rule (layout.sqlite_file) names, options or not.
    assert log_rows(store + options, size) == (size, expected)
    assert log_size(store + options) == size
