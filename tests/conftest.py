"""Shared test fixtures: where the real data lives, and fresh stores on real databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CLEARWALL_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data directory (../shared/data); tests read lists from it."""
    if not DATA.is_dir():
        pytest.fail(f"shared data directory missing: {DATA}")
    return DATA
