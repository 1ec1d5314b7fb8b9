"""docs/formats.md is executable: every example in it is run as a doctest."""

from __future__ import annotations

import doctest
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def test_formats_page_examples_run() -> None:
    result = doctest.testfile(
        str(DOC),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted > 15
    assert result.failed == 0


def test_package_docstring_example_runs() -> None:
    import clearwall.formats

    result = doctest.testmod(clearwall.formats)
    assert result.attempted == 2
    assert result.failed == 0
