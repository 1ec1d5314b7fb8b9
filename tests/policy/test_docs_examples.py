"""The examples table of docs/matcher.md, run against the snapshot and the reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from matcher_builders import NOW, matchers, order, summary

from clearwall.model import Action

DOC = Path(__file__).resolve().parents[2] / "docs" / "matcher.md"
ORDER = re.compile(r"(\d+)(?: (\w+))?: `([^`]+)`")
VERDICT = re.compile(r"^(allow|block)(?: (\w+))?(?:, cites ([\d, ]+))?$")


def examples() -> list[tuple[str, str, str]]:
    rows = []
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("| orders and rules |"):
            in_table = True
            continue
        if in_table and line.startswith("|---"):
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.append((cells[0], cells[1].strip("`"), cells[2]))
    return rows


ROWS = examples()


def test_the_table_is_found() -> None:
    assert len(ROWS) >= 10


@pytest.mark.parametrize(("rules", "query", "verdict"), ROWS, ids=[r[1] for r in ROWS])
def test_doc_example(rules: str, query: str, verdict: str, tmp_path: Path) -> None:
    orders = [
        order(int(id), action=Action(action or "nxdomain"), rules=[rule])
        for id, action, rule in ORDER.findall(rules)
    ]
    parsed = VERDICT.match(verdict)
    assert orders and parsed, (rules, verdict)
    decision, action, cites = parsed.groups()
    ids = tuple(int(c) for c in cites.split(",")) if cites else ()
    expected = (decision, action if decision == "block" else None, ids)
    for label, match in matchers(orders, tmp_path).items():
        assert summary(match(query, "de", NOW)) == expected, label
