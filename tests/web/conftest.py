"""Fixtures for the web tests: a seeded store on a real database, the app and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from clearwall.web.app import create_app
from web.seeding import BASE_URL, Seeded, seed


@pytest.fixture
def seeded(store_url: str, tmp_path: Path) -> Seeded:
    """A seeded store on SQLite and on PostgreSQL (the test runs once per backend)."""
    return seed(store_url, tmp_path)


@pytest.fixture
def seeded_sqlite(sqlite_url: str, tmp_path: Path) -> Seeded:
    """A seeded store on SQLite only (browser and fuzz tests)."""
    return seed(sqlite_url, tmp_path)


@pytest.fixture
def app(seeded: Seeded) -> FastAPI:
    """The web app over the seeded store, standalone (it compiles its own snapshot)."""
    return create_app(seeded.config, seeded.url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (ASGI), as host portal.test."""
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c
