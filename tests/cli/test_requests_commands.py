"""The requests commands as a user runs them, on SQLite and PostgreSQL: docs/requests.md's
walkthrough prints what the page says, and no command lets the sender act for the
receiver."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli_env, make_runner

DOC = Path(__file__).resolve().parents[2] / "docs" / "requests.md"


def walkthrough(tmp_path: Path, store_url: str) -> list[str]:
    """Run the page's walkthrough in ``tmp_path``; its stdout lines."""
    script = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", DOC.read_text(), re.S)
    assert script
    prelude = f'set -e\nclearwall() {{ "{sys.executable}" -m clearwall "$@"; }}\n'
    proc = subprocess.run(
        ["bash", "-c", prelude + script.group(1)],
        cwd=tmp_path,
        env=cli_env(tmp_path, store_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


def test_the_walkthrough_runs_as_documented(tmp_path: Path, store_url: str) -> None:
    lines = walkthrough(tmp_path, store_url)
    *_, request_id, before, order_id, after, home = lines
    assert (request_id, order_id) == ("1", "1")
    assert json.loads(before)["decision"] == "allow"
    blocked = json.loads(after)
    assert blocked["decision"] == "block"
    assert [(o["id"], o["jurisdiction"], o["authority"]) for o in blocked["orders"]] == [
        (1, "xb", "Consumer Regulator of B")
    ]
    assert json.loads(home)["decision"] == "allow"
    run = make_runner(tmp_path, store_url)
    shown = json.loads(run("requests", "show", "1", "--json").stdout)
    assert (shown["status"], shown["order_id"]) == ("accepted", 1)
    assert run("requests", "list", "--jurisdiction", "xa").stdout.startswith("1\taccepted\txa\txb")


@pytest.mark.parametrize(
    "args",
    [
        ["requests", "accept", "2", "--authority", "1", "--legal-basis", "b", "--reference", "r"],
        ["requests", "refuse", "2", "--authority", "1", "--reason", "no"],
        ["requests", "withdraw", "2", "--authority", "2", "--reason", "no"],
        ["requests", "file", "--authority", "2", "--to", "xb", "--category", "phishing",
         "--legal-basis", "b", "--reference", "r", "--names", "phishing.hosts"],
    ],
    ids=["sender-accepts", "sender-refuses", "receiver-withdraws", "to-itself"],
)  # fmt: skip
def test_no_command_lets_one_side_act_for_the_other(
    tmp_path: Path, sqlite_url: str, args: list[str]
) -> None:
    walkthrough(tmp_path, sqlite_url)
    run = make_runner(tmp_path, sqlite_url)
    run("requests", "file", "--authority", "1", "--to", "xb", "--category", "phishing",
        "--legal-basis", "b", "--reference", "second", "--names", "phishing.hosts")  # fmt: skip
    size = run("ledger", "verify").stdout
    failed = run(*args, ok=False)
    assert failed.stderr.strip() and "Traceback" not in failed.stderr
    assert run("ledger", "verify").stdout == size
    assert json.loads(run("requests", "show", "2", "--json").stdout)["status"] == "open"
