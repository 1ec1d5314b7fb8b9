"""The SVG charts: every series of a line chart stays visible, equal values included."""

from __future__ import annotations

import datetime as dt
import itertools
import xml.etree.ElementTree as ET

import pytest

from clearwall.web import charts

SVG = "{http://www.w3.org/2000/svg}"
D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 3, 1)
LINE_WIDTH = 2.5  # svg.chart .line in style.css


def points(line: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(x), float(y)) for x, y in (p.split(",") for p in (line.get("points") or "").split())
    ]


def ys(line: ET.Element) -> list[float]:
    return [y for _x, y in points(line)]


def segments(line: ET.Element) -> list[tuple[str, float, float, float]]:
    """The line's horizontal ("h", y, x1, x2) and vertical ("v", x, y1, y2) segments."""
    out = []
    pts = points(line)
    for (x1, y1), (x2, y2) in itertools.pairwise(pts):
        if y1 == y2 and x1 != x2:
            out.append(("h", y1, min(x1, x2), max(x1, x2)))
        elif x1 == x2 and y1 != y2:
            out.append(("v", x1, min(y1, y2), max(y1, y2)))
    return out


def drawn_over(a: ET.Element, b: ET.Element) -> list[tuple[str, float, float]]:
    """Where two lines run along each other closer than a line's width (overlapping by
    more than a line's width along their length)."""
    found = []
    for kind, at, lo, hi in segments(a):
        for kind2, at2, lo2, hi2 in segments(b):
            overlap = min(hi, hi2) - max(lo, lo2)
            if kind == kind2 and abs(at - at2) < LINE_WIDTH and overlap > LINE_WIDTH:
                found.append((kind, at, at2))
    return found


@pytest.mark.parametrize(
    "series",
    [
        # the demo's case: XA under XB, one order each since the same day
        {"XA": ((D1, 1.0),), "XB": ((D1, 1.0),)},
        {"A": ((D1, 2.0), (D2, 3.0)), "B": ((D1, 2.0), (D2, 3.0)), "C": ((D1, 2.0), (D2, 3.0))},
        {"A": ((D1, 1.0), (D3, 4.0)), "B": ((D1, 1.0), (D2, 2.0)), "all": ((D2, 1.0),)},
        {f"J{i}": ((D1, 5.0),) for i in range(9)},  # more series than colours and dashes
    ],
    ids=["two equal", "three equal", "equal then apart", "nine equal"],
)
def test_every_series_stays_visible(series: dict[str, tuple[tuple[dt.date, float], ...]]) -> None:
    svg = str(charts.line_chart([charts.Series(k, v) for k, v in series.items()], "Orders"))
    root = ET.fromstring(svg)
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == len(series)
    for a, b in itertools.combinations(lines, 2):
        assert not drawn_over(a, b), (a.get("class"), b.get("class"), drawn_over(a, b))
    # each series has its own look (colour, and dash where colours repeat) and a legend
    looks = {(line.get("class"), line.get("stroke-dasharray")) for line in lines}
    assert len(looks) == len(series)
    legend = [t.text or "" for t in root.findall(f".//{SVG}text")]
    for label in series:
        assert any(text.startswith(f"{label} (") for text in legend), label


def test_offsets_keep_values_readable() -> None:
    """The shifts are centred on the true value and stay well within a grid step."""
    equal = [charts.Series(f"J{i}", ((D1, 4.0),)) for i in range(4)]
    root = ET.fromstring(str(charts.line_chart(equal, "Orders")))
    finals = [ys(line)[-1] for line in root.findall(f".//{SVG}polyline")]
    grid = sorted(float(g.get("y1") or 0) for g in root.findall(f".//{SVG}line[@class='grid']"))
    step = grid[1] - grid[0]
    true_y = grid[0]  # 4.0 is the axis maximum: the top grid line
    assert abs(sum(finals) / len(finals) - true_y) < 0.2
    assert max(abs(y - true_y) for y in finals) < step / 4
