"""The console in a real browser (Debian's Chromium, Playwright) against ``clearwall serve``.

One test walks an authority through its day: sign in, upload a list, read the preview,
publish, see the order enforced by a real DNS query, revoke it, decide an appeal. The
other runs axe-core (installed from npm into ``.cache/npm`` by the ``axe`` fixture) on
every console page and allows no serious or critical violation. Screenshots go to
``test-artifacts/console/`` (the tests print the path).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from dnsserver.upstreams import NSD, nsd_available
from web.gateway import Running, running_gateway
from web.seeding import Seeded
from web.test_browser import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
AXE_DIR = ROOT / ".cache" / "npm"
AXE_JS = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_VERSION = "4.10.2"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NSD]:
    """A real nsd serving example.test (the gateway's upstream)."""
    if not nsd_available():
        pytest.fail("nsd is not installed: run scripts/install-system-deps.sh as root")
    server = NSD(tmp_path_factory.mktemp("nsd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def axe() -> Path:
    """axe-core's browser bundle, installed from npm on first use."""
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed (it installs axe-core for the accessibility test)")
        subprocess.run(
            [
                npm,
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(AXE_DIR),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return AXE_JS


@pytest.fixture
def gateway(seeded_sqlite: Seeded, nsd: NSD, tmp_path: Path) -> Iterator[Running]:
    """``clearwall serve`` over the seeded store."""
    with running_gateway(seeded_sqlite, nsd, tmp_path) as running:
        yield running


def _artifacts(name: str) -> Path:
    out = ARTIFACTS / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    print(f"screenshots: {out}")
    return out


def _wait_for(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_an_authority_publishes_enforces_revokes_and_decides(
    gateway: Running, seeded_sqlite: Seeded, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    s = seeded_sqlite
    shots = _artifacts("authority")
    appeal = s.service.file_appeal(
        s.order_a, "blocked-a.example", "owner@blocked-a.example", "It is a film archive."
    )
    listing = tmp_path / "court-list.txt"
    listing.write_text(
        "# list attached to order HC-2025-0107\n"
        "0.0.0.0 www.example.test\n"
        "this line is not a hosts entry\n"
        "0.0.0.0 mirror.blocked-a.example\n"
    )
    assert gateway.ask("www.example.test").rcode() == dns.rcode.NOERROR
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(gateway.base + "/console")
        page.fill("#token", s.tokens["auth_a"])
        page.screenshot(path=str(shots / "01-sign-in.png"), full_page=True)
        page.click("form.card button[type=submit]")
        expect(page.locator("header .who")).to_contain_text("Alphaland High Court")
        page.screenshot(path=str(shots / "02-dashboard.png"), full_page=True)

        page.get_by_role("link", name="Orders", exact=True).click()
        page.get_by_role("link", name="New order from a list").click()
        page.fill("#title", "Mirrors of the streaming site")
        page.fill("#legal_basis", "Copyright Act s. 97A")
        page.fill("#reference", "HC-2025-0107")
        page.select_option("#format", "hosts")
        page.set_input_files("#upload", str(listing))
        page.screenshot(path=str(shots / "03-upload.png"), full_page=True)
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#parsed-count")).to_have_text("2")
        expect(page.locator("#rejected-count")).to_have_text("1")
        expect(page.locator("#rejected")).to_contain_text("3")  # the line number
        expect(page.locator("#covered")).to_contain_text("mirror.blocked-a.example")
        expect(page.locator("#affected")).to_contain_text("Alphaland (AA)")
        page.screenshot(path=str(shots / "04-preview.png"), full_page=True)

        page.get_by_role("button", name="Publish the order").click()
        expect(page.locator(".notice.success")).to_contain_text("published")
        order_url = page.url.split("?")[0]
        order_id = int(order_url.rsplit("/", 1)[1])
        page.screenshot(path=str(shots / "05-published.png"), full_page=True)
        _wait_for(
            lambda: gateway.ask("www.example.test").rcode() == dns.rcode.NXDOMAIN,
            "the gateway enforces the new order",
        )
        [ede] = [o for o in gateway.ask("www.example.test").options if o.otype == 15]
        assert ede.code == 16 and f"/orders/{order_id}" in (ede.text or "")  # EDE Censored

        page.fill("#revoke-reason", "Set aside on appeal by the High Court")
        page.get_by_role("button", name="Revoke the order").click()
        expect(page.locator(".notice.success")).to_contain_text("revoked")
        page.screenshot(path=str(shots / "06-revoked.png"), full_page=True)
        _wait_for(
            lambda: gateway.ask("www.example.test").rcode() == dns.rcode.NOERROR,
            "the gateway stops enforcing the revoked order",
        )

        page.get_by_role("link", name="Appeals", exact=True).click()
        expect(page.locator(f"#appeal-{appeal.id}")).to_contain_text("film archive")
        page.check(f"#up-{appeal.id}")
        page.fill(f"#explanation-{appeal.id}", "The archive holds public-domain films only.")
        page.screenshot(path=str(shots / "07-appeal.png"), full_page=True)
        page.get_by_role("button", name=f"Decide appeal #{appeal.id}").click()
        expect(page.locator(".notice.success")).to_contain_text(f"Appeal #{appeal.id} upheld")
        page.screenshot(path=str(shots / "08-decided.png"), full_page=True)

        page.get_by_role("link", name="Queries", exact=True).click()
        expect(page.locator("#queries")).to_contain_text("www.example.test")
        expect(page.locator("#queries")).to_contain_text("127.0.0.0/24")
        page.screenshot(path=str(shots / "09-queries.png"), full_page=True)
        browser.close()
    assert s.reader.appeal(appeal.id).status.value == "upheld"
    assert s.reader.order(order_id).status.value == "revoked"
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_every_console_page_passes_axe(gateway: Running, seeded_sqlite: Seeded, axe: Path) -> None:
    from playwright.sync_api import sync_playwright

    s = seeded_sqlite
    shots = _artifacts("axe")
    s.service.file_appeal(s.order_a, "blocked-a.example", "a@b.example", "Please unblock it.")
    gateway.ask("www.blocked-a.example")  # one blocked and one allowed query in the log
    gateway.ask("www.example.test")
    script = axe.read_text()
    found: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # axe is injected as an inline script, which the console's CSP rightly forbids.
        context = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 900})
        page = context.new_page()

        def check(name: str) -> None:
            page.add_script_tag(content=script)
            result = page.evaluate(
                "axe.run(document, {runOnly: {type: 'tag', values: "
                "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
            )
            bad = [
                f"{v['id']} ({v['impact']}): {v['help']} at "
                + ", ".join(str(n["target"]) for n in v["nodes"][:3])
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if bad:
                found[name] = bad
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        page.goto(gateway.base + "/console")
        check("sign-in")
        page.fill("#token", s.tokens["operator"])
        page.click("form.card button[type=submit]")
        for name, path in [
            ("dashboard", "/console"),
            ("orders", "/console/orders"),
            ("order", f"/console/orders/{s.order_a}"),
            ("appeals", "/console/appeals"),
            ("subscriptions", "/console/subscriptions"),
            ("jurisdictions", "/console/jurisdictions"),
            ("authorities", "/console/authorities"),
            ("tokens", "/console/tokens"),
            ("witnesses", "/console/witnesses"),
            ("queries", "/console/queries"),
            ("new-order", "/console/orders/new"),
        ]:
            page.goto(gateway.base + path)
            check(name)
        page.fill("#title", "t")
        page.fill("#legal_basis", "b")
        page.fill("#reference", "r")
        page.fill("#rules", "one.example\nnot a name!\n")
        page.get_by_role("button", name="Preview").click()
        check("preview")
        page.goto(gateway.base + "/console/tokens")
        page.get_by_role("button", name="Create the token").click()
        check("token-created")
        browser.close()
    assert not found, found
