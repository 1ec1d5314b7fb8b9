"""Every Python example in docs/dns runs and its assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "dns"
PAGES = sorted(DOCS.glob("*.md"))
HANDLER_PAGES = (
    "querylog",
    "responder",
    "acl",
    "ratelimit",
    "jurisdiction",
    "cache",
    "ddr",
    "special_use",
    "query_policy",
    "minimal_any",
    "response_policy",
    "upstream",
)


def test_every_handler_has_a_page() -> None:
    from clearwall.dnsserver.handlers import CHAIN

    names = {p.stem for p in PAGES}
    assert {name for name, _ in CHAIN} <= names
    assert set(HANDLER_PAGES) <= names


@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.stem in HANDLER_PAGES], ids=lambda p: p.stem
)
def test_page_example_runs(page: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, f"{page.name} has no runnable example"
    for code in blocks:
        exec(compile(code, str(page), "exec"), {"__name__": f"docs_{page.stem}"})
