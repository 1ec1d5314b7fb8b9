"""The probe commands as a user meets them: one-line errors, skipped rows with line numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.ports import free_port

pytestmark = pytest.mark.timeout(60)


def clearwall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def test_silent_resolver_is_a_clear_error() -> None:
    port = free_port()
    result = clearwall(
        "probe", "--url", "http://a.test/", "--resolver", f"127.0.0.1:{port}", "--timeout", "0.5"
    )
    assert result.returncode == 1
    assert "does not answer" in result.stderr and "Traceback" not in result.stderr


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "ftp://x.test/,NEWS,News,2020-01-01,x,\n"
        "http://short.test/,NEWS\n",
        encoding="utf-8",
    )
    result = clearwall("probe", str(listing), "--resolver", "127.0.0.1:9", "--timeout", "0.5")
    assert result.returncode == 1
    assert "line 2" in result.stderr and "line 3" in result.stderr
    assert "no usable targets" in result.stderr


def test_log_needs_key_and_jurisdiction() -> None:
    result = clearwall("probe", "--url", "http://a.test/", "--log", "http://127.0.0.1:9")
    assert result.returncode == 1 and "--key" in result.stderr


def test_unreachable_helper_is_a_clear_error() -> None:
    port = free_port()
    result = clearwall(
        "probe", "http://127.0.0.1:9/", "--control-helper", f"http://127.0.0.1:{port}",
        "--timeout", "0.5",
    )  # fmt: skip
    assert result.returncode == 1
    assert "test helper" in result.stderr and "unreachable" in result.stderr


def test_helper_rejects_bad_listen() -> None:
    result = clearwall("probe-helper", "--listen", "nonsense", "--resolver", "127.0.0.1")
    assert result.returncode == 1 and "--listen" in result.stderr
