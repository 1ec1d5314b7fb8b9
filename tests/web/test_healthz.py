"""``/healthz`` of a node whose PostgreSQL goes away: a 503 naming the reason, then ok."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from tests.pgserver import PostgresCluster

from clearwall.web.app import create_app
from web.seeding import seed


def _refuse(cluster: PostgresCluster, database: str, refuse: bool) -> None:
    cluster.admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(not refuse).lower()}')
    if refuse:
        cluster.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


def test_healthz_says_when_the_store_is_away(
    pg_url: str, pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    seeded = seed(pg_url, tmp_path)
    database = make_url(pg_url).database
    assert database is not None
    client = TestClient(create_app(seeded.config, seeded.url))
    assert client.get("/healthz").text.startswith("ok ")
    _refuse(pg_cluster, database, True)
    try:
        away = client.get("/healthz")
        assert away.status_code == 503
        assert away.text.startswith("store unreachable: database read failed")
    finally:
        _refuse(pg_cluster, database, False)
    assert client.get("/healthz").status_code == 200
