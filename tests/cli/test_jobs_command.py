"""``clearwall jobs run``: the jobs ``serve`` runs, once, from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.conftest import Run


def _expired_order(cli: Run, tmp_path: Path) -> str:
    """An order that ended in 2021; its id."""
    cli("jurisdictions", "add", "xa", "--name", "A")
    cli("authorities", "add", "--name", "Court", "--kind", "court", "--jurisdiction", "xa")
    (tmp_path / "list.txt").write_text("old.example\n")
    return cli(
        "orders", "add", "--authority", "1", "--title", "Old", "--legal-basis", "Act",
        "--reference", "OLD-1", "--category", "court-order", "--action", "nxdomain",
        "--rules", str(tmp_path / "list.txt"), "--effective-from", "2020-01-01",
        "--expires", "2021-01-01",
    ).stdout.strip()  # fmt: skip


def test_jobs_run_all_expires_and_publishes(cli: Run, tmp_path: Path) -> None:
    order = _expired_order(cli, tmp_path)
    out = cli("jobs", "run", "all").stdout.splitlines()
    assert out == [
        f"expire: expired 1 order(s): {order}",
        "refresh: refreshed 0 subscription(s)",
        "witnesses: no witnesses configured",
        "mirrors: no mirrors",
    ]
    assert cli("jobs", "run", "expire").stdout == "expire: expired 0 order(s)\n"
    assert "\texpired\t" in cli("orders", "list").stdout
    assert "ok: 3 entries" in cli("ledger", "verify").stdout  # logged and published


@pytest.mark.parametrize("names", [["bogus"], ["expire", "sweep"], ["all", "expire"]])
def test_an_unknown_job_is_refused_and_nothing_runs(
    cli: Run, tmp_path: Path, names: list[str]
) -> None:
    _expired_order(cli, tmp_path)
    err = cli("jobs", "run", *names, ok=False).stderr
    assert "unknown job" in err and "choose expire, refresh, witnesses, mirrors or all" in err
    assert "\tactive\t" in cli("orders", "list").stdout  # nothing expired it
