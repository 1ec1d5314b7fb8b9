"""The examples in docs/api.md work as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from web.seeding import Seeded, bearer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def example(tag: str) -> dict[str, object]:
    """The JSON code block tagged ``tag`` in docs/api.md."""
    match = re.search(rf"```json {tag}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert match, f"no example {tag!r} in {DOCS}"
    data = json.loads(match.group(1))
    assert isinstance(data, dict)
    return data


async def test_the_documented_order_body_publishes_an_order(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    body = example("order-example")
    body["authority"] = seeded.authority_a
    r = await client.post("/api/v1/orders", json=body, headers=bearer(seeded.tokens["auth_a"]))
    assert r.status_code == 201, r.text
    assert r.json()["rule_count"] == 2 and r.json()["issues"] == []
    page = await client.get("/search", params={"name": "mirror-pirate.example"})
    assert "HC-2025-0117" in page.text
