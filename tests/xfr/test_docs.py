"""docs/xfr.md's examples are what the code does: the zone table, and the printed config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from clearwall.formats.export import rpz_rdata
from clearwall.model import Action, AuthorityKind
from clearwall.policy.model import CompiledOrder
from clearwall.xfr.zones import RuleIndex, jurisdiction_zones

from .builders import NOW, order

DOC = Path(__file__).resolve().parents[2] / "docs" / "xfr.md"
TEXT = DOC.read_text(encoding="utf-8")


def _table_rows() -> list[tuple[str, str, str]]:
    table = TEXT.split("<!-- zone examples -->\n", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def _orders(cell: str) -> list[CompiledOrder]:
    """``court: `subtree x.com` · operator nodata: `exact m.x.com``` as orders."""
    specs: list[tuple[AuthorityKind, Action, list[str]]] = []
    for part in cell.split(" · "):
        head, _, rule = part.rpartition("`")[0].partition("`")
        who = head.strip().rstrip(":").split()
        if who:
            kind = AuthorityKind.COURT if who[0] == "court" else AuthorityKind.OPERATOR
            action = Action(who[1]) if len(who) > 1 else Action.NXDOMAIN
            specs.append((kind, action, []))
        specs[-1][2].append(rule)
    return [
        order(i + 1, rules, kind=kind, action=action)
        for i, (kind, action, rules) in enumerate(specs)
    ]


def _records(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


@pytest.mark.parametrize(("orders", "censored", "blocked"), _table_rows())
def test_zone_examples(orders: str, censored: str, blocked: str) -> None:
    zones = jurisdiction_zones(RuleIndex(_orders(orders)), "de", NOW)
    got = [
        {
            f"{owner} {rdtype} {data}"
            for owner, policy in zone.policies.items()
            for rdtype, data in rpz_rdata(policy, "127.0.0.1", "::1")
        }
        for zone in zones
    ]
    assert got == [_records(censored), _records(blocked)]


def test_fleet_config_walkthrough(tmp_path: Path) -> None:
    block = TEXT.split("<!-- fleet walkthrough -->\n", 1)[1]
    command = re.search(r"```sh\n(.*?)\n```", block, re.S)
    printed = re.search(r"prints\n\n```text\n(.*?)```", block, re.S)
    assert command and printed
    args = command.group(1).split()[1:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == printed.group(1)
