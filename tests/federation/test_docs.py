"""docs/federation.md's walkthrough runs as written and prints what the page says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from federation.registries import Registry, mirror_store

DOC = Path(__file__).resolve().parents[2] / "docs" / "federation.md"


def test_walkthrough_runs(tmp_path: Path) -> None:
    script = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", DOC.read_text(), re.S)
    assert script
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    _, store = mirror_store(tmp_path / "isp")
    db = str(store.engine.url)
    store.dispose()
    try:
        registry.order(["blocked.example"], "TT-1")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
        env |= {"CLEARWALL_DB": db, "REGISTRY": registry.url, "VKEY": registry.vkey}
        prelude = f'set -e\nclearwall() {{ "{sys.executable}" -m clearwall "$@"; }}\n'
        done = subprocess.run(
            ["bash", "-c", prelude + script.group(1)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        registry.close()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[1].endswith("at size 3, 1 adoption(s), 0 withdrawal(s)"), lines
    checked = json.loads(lines[2])
    assert checked["decision"] == "block" and checked["orders"][0]["reference"] == "TT-1"
    assert lines[3].endswith("1 adoption entr(ies) borne out by 1 registry log(s)"), lines
