"""docs/cli.md's walkthrough runs as written and prints what the page says it prints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .conftest import cli_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_walkthrough_runs(tmp_path: Path, store_url: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    script = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", text, re.S)
    expected = re.search(r"`check` prints\n\n```json\n(.*?)\n```", text, re.S)
    assert script and expected
    env = cli_env(tmp_path, store_url)
    prelude = f'set -e\nclearwall() {{ "{sys.executable}" -m clearwall "$@"; }}\n'
    proc = subprocess.run(
        ["bash", "-c", prelude + script.group(1)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == "1"  # the order id alone
    assert json.loads(lines[-1]) == json.loads(expected.group(1))
    assert "court.txt:3:" in proc.stderr
