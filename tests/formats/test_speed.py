"""Million-line lists stream through the parsers in seconds (measured on real names)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clearwall.formats import parse_file

MILLION = 1_000_000

# Each format's line for a name; the names are the real names of three lists, prefixed
# "xN." per round until a million unique lines are reached.
SHAPES = {
    "domains": "{}",
    "adblock": "||{}^",
    "hosts": "0.0.0.0 {}",
    "rpz": "{} CNAME .",
}


@pytest.fixture(scope="module")
def million_names(data_dir: Path) -> list[str]:
    names: dict[str, None] = {}
    for name in (
        "blocklistproject/phishing.domains.txt",
        "hagezi/light.domains.txt",
        "stevenblack/unified-hosts.trimmed-domains.txt",
    ):
        for line in (data_dir / name).read_text().split("\n"):
            line = line.strip()
            if line and not line.startswith("#") and "xn--17g" not in line:
                names[line] = None
    base = list(names)
    out: list[str] = []
    round_ = 0
    while len(out) < MILLION:
        prefix = f"x{round_}." if round_ else ""
        out.extend(prefix + name for name in base[: MILLION - len(out)])
        round_ += 1
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(SHAPES))
def test_a_million_lines_parse_in_seconds(
    tmp_path: Path, million_names: list[str], fmt: str
) -> None:
    path = tmp_path / f"million.{fmt}"
    header = "$TTL 60\n@ SOA ns. h. 1 2 3 4 5\n" if fmt == "rpz" else ""
    path.write_text(header + "".join(SHAPES[fmt].format(n) + "\n" for n in million_names))
    cpu = time.process_time()
    result = parse_file(path)
    elapsed = time.process_time() - cpu
    assert result.format == fmt
    assert len(result.rules) == MILLION
    assert result.issues == []
    # About 4 CPU-seconds (7 for RPZ) on the shared 2-core box under load; room to spare.
    assert elapsed < 20, f"{fmt}: {elapsed:.1f} CPU-seconds for a million lines"
