"""docs/witness.md's loop runs as written: a witness, a log asking it, a witnessed proof."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.ports import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "witness.md"


def test_witness_example_runs(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    script = re.search(r"<!-- witness-example -->\n```sh\n(.*?)```", text, re.S)
    said = re.search(r"The last line prints `(.*?)`\.", text, re.S)
    assert script and said
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["PORT"] = str(free_port())
    prelude = f'set -e\nclearwall() {{ "{sys.executable}" -m clearwall "$@"; }}\n'
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("w") as o, err.open("w") as e:
        # A session of its own, so the witness started in the background ends with it.
        proc = subprocess.Popen(
            ["bash", "-c", prelude + script.group(1)],
            cwd=tmp_path,
            env=env,
            stdout=o,
            stderr=e,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    assert code == 0, err.read_text()
    assert out.read_text().strip().splitlines()[-1] == " ".join(said.group(1).split())
