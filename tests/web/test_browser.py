"""A real browser (Debian's Chromium driven by Playwright) against a real uvicorn server.

Screenshots of every step are saved under ``test-artifacts/web/`` for people to look at.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from tests.ports import free_port

from clearwall.config import BlockConfig
from clearwall.web.app import create_app
from web.seeding import Seeded

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")


@pytest.fixture
def server(seeded_sqlite: Seeded) -> Iterator[str]:
    """The app on a real uvicorn listener on loopback; yields its base URL.

    Loopback clients are in no jurisdiction, so the default jurisdiction is ``aa``: the
    browser sees what a client in Alphaland sees.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    s = seeded_sqlite
    config = dataclasses.replace(
        s.config,
        dns=dataclasses.replace(
            s.config.dns,
            default_jurisdiction="aa",
            block=BlockConfig(public_url=base, operator="Test Net"),
        ),
    )
    app = create_app(config, s.url)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def test_a_newcomer_finds_out_why_a_name_is_blocked_and_appeals(
    server: str, seeded_sqlite: Seeded
) -> None:
    from playwright.sync_api import expect, sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    port = server.rsplit(":", 1)[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                *CHROMIUM_ARGS,
                # the sinkhole: blocked names resolve to the block-page server (this one)
                "--host-resolver-rules=MAP blocked-a.example 127.0.0.1, "
                "MAP cdn.malware.example 127.0.0.1",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(server + "/")
        expect(page.locator("h1")).to_contain_text("blocked")
        page.screenshot(path=str(ARTIFACTS / "01-home.png"), full_page=True)

        page.fill("#q", "www.blocked-a.example")
        page.click("form.search button")
        expect(page.locator("#answer")).to_have_text("Blocked in 1 of 2 jurisdictions: Alphaland.")
        expect(page.locator(".verdict.blocked")).to_contain_text("Alphaland High Court")
        expect(page.locator(".verdict.blocked")).to_contain_text("15 January 2025")
        page.screenshot(path=str(ARTIFACTS / "02-search-blocked.png"), full_page=True)

        page.click("text=Read the order")
        expect(page.locator("h1")).to_have_text("Blocking of a copyright-infringing streaming site")
        expect(page.locator("dl.facts")).to_contain_text("HC-2025-0042")
        page.screenshot(path=str(ARTIFACTS / "03-order.png"), full_page=True)

        page.click("text=Appeal this order")
        page.fill("#name", "blocked-a.example")
        page.fill("#contact", "owner@blocked-a.example")
        page.fill("#reason", "This is a public-domain film archive; nothing here infringes.")
        page.screenshot(path=str(ARTIFACTS / "04-appeal-form.png"), full_page=True)
        page.click("form button[type=submit]")
        expect(page.locator(".notice.success")).to_contain_text("was filed and published")
        expect(page.locator("body")).not_to_contain_text("owner@blocked-a.example")
        page.screenshot(path=str(ARTIFACTS / "05-appeal-filed.png"), full_page=True)
        assert seeded_sqlite.reader.appeals(seeded_sqlite.order_a)[0].reason.startswith("This")

        page.goto(server + "/stats")
        assert page.locator("svg.chart").count() >= 6
        expect(page.locator("svg.chart").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "06-stats.png"), full_page=True)

        page.goto(server + "/log")
        expect(page.locator("#verify-cmd")).to_contain_text("clearwall ledger verify")
        page.screenshot(path=str(ARTIFACTS / "07-log.png"), full_page=True)

        response = page.goto(f"http://blocked-a.example:{port}/watch/film-123")
        assert response is not None
        assert response.status == 451
        assert (
            response.headers["link"]
            == f'<{server}/orders/{seeded_sqlite.order_a}>; rel="blocked-by"'
        )
        expect(page.locator("#headline")).to_contain_text("Alphaland High Court")
        page.screenshot(path=str(ARTIFACTS / "08-blockpage-451.png"), full_page=True)

        response = page.goto(f"http://cdn.malware.example:{port}/payload.exe")
        assert response is not None and response.status == 403
        expect(page.locator("#headline")).to_contain_text("malware")
        page.screenshot(path=str(ARTIFACTS / "09-blockpage-403.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(server + "/search?name=www.blocked-a.example")
        expect(phone.locator("#answer")).to_be_visible()
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the search page scrolls sideways on a phone ({width}px)"
        phone.screenshot(path=str(ARTIFACTS / "10-search-phone.png"), full_page=True)

        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
