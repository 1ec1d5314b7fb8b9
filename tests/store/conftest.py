"""Fixtures for store tests: a migrated store and its service on each real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clearwall.store import PolicyService, Store, open_store


def migrated(url: str) -> Iterator[Store]:
    """A freshly migrated store at ``url``, disposed of afterwards."""
    s = open_store(url, migrate=True)
    try:
        yield s
    finally:
        s.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A freshly migrated store on SQLite and on PostgreSQL."""
    yield from migrated(store_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A freshly migrated store on PostgreSQL only (what only PostgreSQL has)."""
    yield from migrated(pg_url)


@pytest.fixture
def pg_service(pg_store: Store) -> PolicyService:
    """``service`` on PostgreSQL only."""
    return populated(pg_store)


@pytest.fixture
def service(store: Store) -> PolicyService:
    """The write path over ``store``, with two jurisdictions and three authorities."""
    return populated(store)


def populated(store: Store) -> PolicyService:
    """The write path over ``store``, with two jurisdictions and three authorities."""
    svc = PolicyService(store)
    svc.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8", "::1/128"])
    svc.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])
    svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    svc.add_authority("Regulator B", "regulator", "xb", ["https://reg.b.example"])
    svc.add_authority("Operator security", "operator", "xa", ["tel:+10000000000"])
    return svc
