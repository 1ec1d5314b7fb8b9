"""Fixtures for the format tests: the zones embedded in Unbound's RPZ replay scenarios."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def rpl_zones(path: Path) -> list[str]:
    """The zone files an Unbound .rpl scenario embeds (TEMPFILE_CONTENTS…TEMPFILE_END)."""
    zones: list[str] = []
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("TEMPFILE_CONTENTS"):
            current = []
        elif line.startswith("TEMPFILE_END"):
            assert current is not None
            zones.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return zones


@pytest.fixture(scope="session", name="rpl_zones")
def rpl_zones_fixture() -> Callable[[Path], list[str]]:
    """The ``rpl_zones`` reader, for tests that open Unbound scenarios."""
    return rpl_zones


@pytest.fixture(scope="session")
def rpz_dir(data_dir: Path) -> Path:
    """The RPZ zones and Unbound RPZ scenarios of the shared data."""
    return data_dir / "rpz"
