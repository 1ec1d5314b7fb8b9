"""Server-side SVG charts (horizontal bars, stepped lines) as escaped inline markup."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE_SIZE = 8  # the stylesheet defines .s0 … .s7
# Line charts: series with equal values would be drawn on top of each other, the last
# hiding the others. Each line is shifted by a few pixels from the next, up and right (so
# both the level and the step of a change stay apart; far less than a grid step or a
# day, so values stay readable) and has its own colour and dash pattern, as its legend.
LINE_OFFSET = 3.0  # pixels between neighbouring series, more than a line's 2.5 px width
DASHES = ("", "7 3", "2 3", "9 3 2 3")


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a time chart: a label and its (date, value) points, sorted by date."""

    label: str
    points: tuple[tuple[dt.date, float], ...]


def _fmt(value: float) -> str:
    """Short human number: 1234 → 1,234; 1234567 → 1.2M."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


TICKS = 4  # horizontal grid lines above zero


def _nice_max(value: float) -> float:
    """An axis maximum of TICKS whole steps, each 1, 2 or 5 times a power of ten (≥ 1)."""
    if value <= 0:
        return float(TICKS)
    want = value / TICKS
    magnitude = 1.0
    while magnitude * 10 <= want:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= want:
            return TICKS * step * magnitude
    return TICKS * 10 * magnitude


def bar_chart(items: Sequence[tuple[str, float]], title: str, unit: str = "") -> Markup:
    """Horizontal bars, largest first; an empty input renders a short 'no data' chart."""
    rows = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    label_w, bar_w, row_h, pad = 170, 230, 28, 8
    width = label_w + bar_w + 70
    height = pad * 2 + max(1, len(rows)) * row_h
    top = max((v for _, v in rows), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    if not rows:
        parts.append(f'<text class="muted" x="{pad}" y="{pad + 17}">No data yet.</text>')
    for i, (label, value) in enumerate(rows):
        y = pad + i * row_h
        w = max(2.0, bar_w * value / top) if value > 0 else 0.0
        shown = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f"<g><title>{escape(label)}: {_fmt(value)}{escape(unit)}</title>"
            f'<text class="label" x="{label_w - 8}" y="{y + 17}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="bar s{i % PALETTE_SIZE}" x="{label_w}" y="{y + 4}" width="{w:.1f}"'
            f' height="{row_h - 8}" rx="3"/>'
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 17}">'
            f"{_fmt(value)}{escape(unit)}</text></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(series: Sequence[Series], title: str) -> Markup:
    """Stepped lines over time (cumulative counts change only at events), with a legend."""
    width, height = 900, 280
    left, right, top, bottom = 56, 16, 16, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [p for s in series for p in s.points]
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    if not points:
        parts.append(f'<text class="muted" x="{left}" y="{top + 20}">No data yet.</text></svg>')
        return Markup("".join(parts))
    start = min(d for d, _ in points)
    end = max(max(d for d, _ in points), dt.datetime.now(dt.UTC).date())
    span = max(1, (end - start).days)
    y_max = _nice_max(max(v for _, v in points))

    def x_of(day: dt.date) -> float:
        return left + plot_w * (day - start).days / span

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * value / y_max

    for k in range(TICKS + 1):  # horizontal grid with value labels
        v = y_max * k / TICKS
        y = y_of(v)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    parts.append(
        f'<text class="axis" x="{left}" y="{top + plot_h + 16}">{start.isoformat()}</text>'
        f'<text class="axis" x="{left + plot_w}" y="{top + plot_h + 16}" text-anchor="end">'
        f"{end.isoformat()}</text>"
    )
    drawn = [s for s in series if s.points]
    for i, s in enumerate(drawn):
        # Centred around the true value: the i-th of n lines sits (i - (n-1)/2) offsets off.
        shift = (i - (len(drawn) - 1) / 2) * LINE_OFFSET
        # Colours repeat every PALETTE_SIZE series; the dash then moves on by one.
        dash = DASHES[(i + i // PALETTE_SIZE) % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        coords: list[str] = []
        last = 0.0
        for day, value in s.points:
            x = x_of(day) + shift
            coords.append(f"{x:.1f},{y_of(last) - shift:.1f}")
            coords.append(f"{x:.1f},{y_of(value) - shift:.1f}")
            last = value
        coords.append(f"{x_of(end) + shift:.1f},{y_of(last) - shift:.1f}")
        parts.append(
            f"<g><title>{escape(s.label)}: {_fmt(last)} now</title>"
            f'<polyline class="line s{i % PALETTE_SIZE}" fill="none"{dash_attr}'
            f' points="{" ".join(coords)}"/></g>'
        )
        lx = left + (i % 4) * 200
        ly = top + plot_h + 36 + (i // 4) * 16
        parts.append(
            f'<line class="line s{i % PALETTE_SIZE}" x1="{lx}" x2="{lx + 22}" y1="{ly - 4}"'
            f' y2="{ly - 4}"{dash_attr}/><text class="label" x="{lx + 28}" y="{ly}">'
            f"{escape(s.label)} ({_fmt(last)})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def cumulative(events: Sequence[tuple[dt.date, float]]) -> tuple[tuple[dt.date, float], ...]:
    """Turn dated increments (negative for removals) into a running total per day."""
    totals: dict[dt.date, float] = {}
    for day, delta in sorted(events):
        totals[day] = totals.get(day, 0.0) + delta
    running = 0.0
    out: list[tuple[dt.date, float]] = []
    for day in sorted(totals):
        running += totals[day]
        out.append((day, running))
    return tuple(out)


def time_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    title: str,
    start: float,
    end: float,
) -> Markup:
    """Lines over a time range in Unix seconds (hours on the axis, UTC), with a legend;
    each series' points are (bucket start, count)."""
    width, height = 900, 260
    left, right, top, bottom = 56, 16, 16, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    values = [v for _, pts in series for _, v in pts]
    if not values:
        parts.append(f'<text class="muted" x="{left}" y="{top + 20}">No data yet.</text></svg>')
        return Markup("".join(parts))
    span = max(1.0, end - start)
    y_max = _nice_max(max(values))

    def x_of(t: float) -> float:
        return left + plot_w * min(1.0, max(0.0, (t - start) / span))

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * value / y_max

    for k in range(TICKS + 1):
        v = y_max * k / TICKS
        y = y_of(v)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    first = dt.datetime.fromtimestamp(start, dt.UTC)
    last = dt.datetime.fromtimestamp(end, dt.UTC)
    parts.append(
        f'<text class="axis" x="{left}" y="{top + plot_h + 16}">{first:%d %b %H:%M} UTC</text>'
        f'<text class="axis" x="{left + plot_w}" y="{top + plot_h + 16}" text-anchor="end">'
        f"{last:%d %b %H:%M} UTC</text>"
    )
    for i, (label, pts) in enumerate(series):
        coords = " ".join(f"{x_of(t):.1f},{y_of(v):.1f}" for t, v in sorted(pts))
        total = sum(v for _, v in pts)
        parts.append(
            f"<g><title>{escape(label)}: {_fmt(total)} in all</title>"
            f'<polyline class="line s{i % PALETTE_SIZE}" fill="none" points="{coords}"/></g>'
        )
        lx = left + (i % 4) * 200
        ly = top + plot_h + 36 + (i // 4) * 16
        parts.append(
            f'<rect class="bar s{i % PALETTE_SIZE}" x="{lx}" y="{ly - 9}" width="12" height="10"'
            f' rx="2"/><text class="label" x="{lx + 18}" y="{ly}">{escape(label)}'
            f" ({_fmt(total)})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
