"""The portal shows an adopted order with its source registry and links to the source."""

from __future__ import annotations

from pathlib import Path

import httpx

from clearwall.config import Config
from clearwall.federation import records
from clearwall.federation.sync import sync
from clearwall.web.app import create_app
from federation.registries import Registry, mirror_store


async def test_an_adopted_order_page_names_its_registry_and_links_the_source(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    try:
        remote = registry.order(["blocked.example"], "TT-7")
        sync(service, records.add(store, registry.url, registry.vkey, {"tt": "tt"}))
        [adopted] = [o for o in service.store.log_entries() if b"order-adopted" in o.data]
        app = create_app(Config(), str(store.engine.url))
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as c:
            page = (await c.get("/orders/1")).text
            log_page = (await c.get("/log")).text
        assert "Adopted from the registry <b>registry.tt.example/log</b>" in page
        assert f'href="{registry.url}/orders/{remote.id}"' in page
        assert f'href="{registry.url}/log/proof/inclusion?index={remote.log_index}"' in page
        assert "order-adopted" in page  # the order's history: the adoption entry
        assert f"adopted from registry.tt.example/log, entry {remote.log_index}" in log_page
        assert adopted.index >= 1
    finally:
        registry.close()
        store.dispose()


def test_the_statistics_count_an_adopted_order_from_when_it_takes_effect(
    tmp_path: Path,
) -> None:
    import datetime as dt

    from clearwall.web.queries import _replay_log

    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    try:
        registry.order(["blocked.example"])  # in force from 2020-01-01
        sync(service, records.add(store, registry.url, registry.vkey, {"tt": "tt"}))
        per_jurisdiction, rules = _replay_log(store)
        assert per_jurisdiction == {"tt": [(dt.date(2020, 1, 1), 1.0)]}
        assert rules == [(dt.date(2020, 1, 1), 1.0)]
    finally:
        registry.close()
        store.dispose()
