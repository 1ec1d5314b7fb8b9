"""Probe output: OONI-like JSON lines, a terminal summary, and a self-contained HTML report."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from clearwall.probe.classify import Kind
from clearwall.probe.inputs import InputProblem
from clearwall.probe.reconcile import Verdict
from clearwall.probe.runner import ProbeResult

TEST_NAME = "clearwall_web_connectivity"
TEST_VERSION = "0.1.0"

VERDICT_COLOURS: dict[str, str] = {
    Verdict.PUBLISHED_AND_ENFORCED.value: "#2e7d32",
    Verdict.ENFORCED_BUT_UNPUBLISHED.value: "#c62828",
    Verdict.PUBLISHED_BUT_NOT_ENFORCED.value: "#ef6c00",
    Verdict.CONSISTENT_ALLOW.value: "#1565c0",
    Verdict.INCONCLUSIVE.value: "#757575",
    Verdict.UNVERIFIED.value: "#9e9e9e",
}
KIND_COLOURS: dict[str, str] = {
    Kind.ACCESSIBLE.value: "#1565c0",
    Kind.DNS_TRANSPARENT_BLOCK.value: "#2e7d32",
    Kind.DNS_TAMPERING.value: "#c62828",
    Kind.TCP_BLOCKING.value: "#ad1457",
    Kind.TLS_INTERFERENCE.value: "#6a1b9a",
    Kind.HTTP_451.value: "#00838f",
    Kind.HTTP_BLOCKPAGE.value: "#d84315",
    Kind.HTTP_DIFF.value: "#f9a825",
    Kind.DOWN.value: "#757575",
    Kind.UNDETERMINED.value: "#bdbdbd",
}


def ooni_time(result: ProbeResult) -> str:
    """OONI's ``measurement_start_time`` format (UTC, ``YYYY-MM-DD HH:MM:SS``)."""
    return result.measurement.start_time.strftime("%Y-%m-%d %H:%M:%S")


def to_record(result: ProbeResult, *, jurisdiction: str = "", log_url: str = "") -> dict[str, Any]:
    """One JSON line: OONI Web Connectivity field names plus a ``clearwall`` section."""
    m = result.measurement
    c = result.classification
    dns_consistency = None
    if m.control_dns is not None and m.control_dns.failure is None and m.dns.failure is None:
        dns_consistency = (
            "consistent" if set(m.dns.addresses) & set(m.control_dns.addresses) else "inconsistent"
        )
    proof = result.proof
    return {
        "measurement_start_time": ooni_time(result),
        "test_name": TEST_NAME,
        "test_version": TEST_VERSION,
        "input": m.target.url,
        "resolver_ip": m.dns.resolver,
        "test_runtime": round(m.runtime, 6),
        "annotations": {"category_code": m.target.category_code},
        "test_keys": {
            "queries": [m.dns.to_json()],
            "control_queries": [m.control_dns.to_json()] if m.control_dns else [],
            "dns_experiment_failure": m.dns.failure,
            "dns_consistency": dns_consistency,
            "tcp_connect": [t.to_json() for t in m.tcp_connect],
            "tls_handshakes": [m.tls_handshake.to_json()] if m.tls_handshake else [],
            "requests": [m.http_request.to_json()] if m.http_request else [],
            "control": m.control.to_json() if m.control else None,
            "control_failure": ("no_test_helper" if m.control is None else m.control.failure),
            "blocking": c.blocking,
            "accessible": c.accessible,
        },
        "clearwall": {
            "classification": c.kind.value,
            "candidates": [k.value for k in c.candidates],
            "evidence": list(c.evidence),
            "reconciliation": result.reconciliation.to_json(),
            "jurisdiction": jurisdiction,
            "log": log_url,
            "proof": (
                {
                    "verified": proof.verified,
                    "checkpoint": proof.checkpoint,
                    "failure": proof.failure,
                    "orders": [o.to_json() for o in proof.orders],
                }
                if proof is not None
                else None
            ),
            "notes": list(m.notes),
        },
    }


def write_jsonl(
    results: Iterable[ProbeResult], out: IO[str], *, jurisdiction: str = "", log_url: str = ""
) -> int:
    """Write one JSON object per line; return how many were written."""
    count = 0
    for result in results:
        out.write(json.dumps(to_record(result, jurisdiction=jurisdiction, log_url=log_url)))
        out.write("\n")
        count += 1
    return count


def summary_table(
    results: Sequence[ProbeResult], problems: Sequence[InputProblem] = ()
) -> list[Table]:
    """The terminal summary: counts per classification and verdict, then the findings."""
    kinds = Counter(r.classification.kind.value for r in results)
    verdicts = Counter(r.reconciliation.verdict.value for r in results)
    counts = Table(title=f"clearwall probe: {len(results)} targets")
    counts.add_column("classification")
    counts.add_column("targets", justify="right")
    for kind in Kind:
        if kinds[kind.value]:
            counts.add_row(kind.value, str(kinds[kind.value]))
    recon = Table(title="reconciliation with the log")
    recon.add_column("verdict")
    recon.add_column("targets", justify="right")
    for verdict in Verdict:
        if verdicts[verdict.value]:
            recon.add_row(verdict.value, str(verdicts[verdict.value]))
    findings = Table(title="findings (not accessible, or not consistent with the log)")
    for column in ("input", "classification", "verdict", "evidence"):
        findings.add_column(column, overflow="fold")
    shown = 0
    for r in results:
        if r.classification.kind is Kind.ACCESSIBLE and r.reconciliation.verdict in (
            Verdict.CONSISTENT_ALLOW,
            Verdict.UNVERIFIED,
        ):
            continue
        if shown == 40:
            findings.add_row("…", "", "", "see the JSON lines for the rest")
            break
        findings.add_row(
            r.measurement.target.url,
            r.classification.kind.value,
            r.reconciliation.verdict.value,
            "; ".join(r.classification.evidence[:2]),
        )
        shown += 1
    tables = [counts, recon, findings]
    if problems:
        bad = Table(title=f"{len(problems)} input rows skipped")
        bad.add_column("line", justify="right")
        bad.add_column("reason", overflow="fold")
        for p in problems[:20]:
            bad.add_row(str(p.line), p.reason)
        tables.append(bad)
    return tables


def print_summary(
    results: Sequence[ProbeResult], problems: Sequence[InputProblem], console: Console
) -> None:
    """Print the summary tables."""
    for table in summary_table(results, problems):
        console.print(table)
    console.print(summary_sentence(results))


def bar_chart(title: str, counts: Sequence[tuple[str, int]], colours: dict[str, str]) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no external resources)."""
    width, label_w, row_h = 640, 220, 26
    total = max((n for _, n in counts), default=0) or 1
    height = row_h * max(len(counts), 1) + 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f'<text x="0" y="18" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (label, n) in enumerate(counts):
        y = 30 + i * row_h
        bar = int((width - label_w - 60) * n / total)
        colour = colours.get(label, "#607d8b")
        parts.append(f'<text x="0" y="{y + 16}">{html.escape(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{max(bar, 1)}" height="18" fill="{colour}"/>'
        )
        parts.append(f'<text x="{label_w + bar + 6}" y="{y + 16}">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_categories(results: Sequence[ProbeResult]) -> str:
    """Per Citizen Lab category: stacked bar of classifications, as inline SVG."""
    per: dict[str, Counter[str]] = {}
    for r in results:
        per.setdefault(r.measurement.target.category_code or "(none)", Counter())[
            r.classification.kind.value
        ] += 1
    rows = sorted(per.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    width, label_w, row_h = 640, 90, 22
    most = max((sum(c.values()) for _, c in rows), default=1) or 1
    height = row_h * max(len(rows), 1) + 34
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" '
        'aria-label="classifications per category" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        '<text x="0" y="18" font-weight="bold">Classifications per category</text>',
    ]
    for i, (category, counter) in enumerate(rows):
        y = 30 + i * row_h
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(category)}</text>')
        x = float(label_w)
        for kind in Kind:
            n = counter[kind.value]
            if not n:
                continue
            w = (width - label_w - 50) * n / most
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="16" '
                f'fill="{KIND_COLOURS[kind.value]}"><title>{html.escape(category)}: '
                f"{kind.value} {n}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 5:.1f}" y="{y + 14}">{sum(counter.values())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def summary_sentence(results: Sequence[ProbeResult]) -> str:
    """One plain sentence: how much was blocked, and how much of it the log backs."""
    blocked = [r for r in results if r.classification.kind.blocked]
    verdicts = Counter(r.reconciliation.verdict for r in results)
    text = f"{len(blocked)} of {len(results)} targets were blocked or interfered with"
    if verdicts[Verdict.UNVERIFIED] == len(results):
        return text + "; no log was checked."
    return (
        f"{text}: {verdicts[Verdict.PUBLISHED_AND_ENFORCED]} backed by a published order, "
        f"{verdicts[Verdict.ENFORCED_BUT_UNPUBLISHED]} with no published order; "
        f"{verdicts[Verdict.PUBLISHED_BUT_NOT_ENFORCED]} published orders were not enforced."
    )


def html_report(
    results: Sequence[ProbeResult],
    problems: Sequence[InputProblem] = (),
    *,
    title: str = "clearwall probe report",
    context: dict[str, str] | None = None,
) -> str:
    """A self-contained HTML page a person can open: charts, legend, findings, all targets."""
    kinds = Counter(r.classification.kind.value for r in results)
    verdicts = Counter(r.reconciliation.verdict.value for r in results)
    kind_rows = [(k.value, kinds[k.value]) for k in Kind if kinds[k.value]]
    verdict_rows = [(v.value, verdicts[v.value]) for v in Verdict if verdicts[v.value]]
    esc = html.escape
    headline = esc(summary_sentence(results))
    info = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in (context or {}).items()
    )
    legend = {
        "published-and-enforced": "blocked, and the log proves an order in force for it",
        "enforced-but-unpublished": "blocked or tampered with, but the log proves no order for it",
        "published-but-not-enforced": "the log proves an order in force, yet the site loads",
        "consistent-allow": "not blocked, and no order in force",
        "inconclusive": (
            "the measurement could not tell blocking from an outage, or only the page "
            "content differed"
        ),
        "unverified": "no verified proof from the log for this name",
    }
    legend_html = "".join(
        f'<li><span class="sw" style="background:{VERDICT_COLOURS[k]}"></span>'
        f"<b>{esc(k)}</b>: {esc(v)}</li>"
        for k, v in legend.items()
    )
    rows = []
    for r in sorted(
        results,
        key=lambda r: (r.classification.kind is Kind.ACCESSIBLE, r.reconciliation.verdict.value),
    ):
        colour = VERDICT_COLOURS[r.reconciliation.verdict.value]
        rows.append(
            "<tr>"
            f"<td>{esc(r.measurement.target.url)}</td>"
            f"<td>{esc(r.measurement.target.category_code)}</td>"
            f"<td>{esc(r.classification.kind.value)}</td>"
            f'<td style="color:{colour}">{esc(r.reconciliation.verdict.value)}</td>'
            f"<td>{esc('; '.join(r.classification.evidence + r.reconciliation.evidence))}</td>"
            "</tr>"
        )
    problem_html = ""
    if problems:
        problem_html = (
            "<h2>Skipped input rows</h2><ul>"
            + "".join(f"<li>line {p.line}: {esc(p.reason)}</li>" for p in problems)
            + "</ul>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#212121}}
table{{border-collapse:collapse;width:100%;font-size:14px}}
td,th{{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}}
svg text{{font-size:13px;font-family:system-ui,sans-serif}}
.sw{{display:inline-block;width:12px;height:12px;margin-right:6px}}
.charts{{display:flex;flex-wrap:wrap;gap:2em}}
</style></head><body>
<h1>{esc(title)}</h1>
<p><b>{headline}</b></p>
<table>{info}<tr><th>targets</th><td>{len(results)}</td></tr></table>
<h2>What the verdicts mean</h2><ul>{legend_html}</ul>
<div class="charts">
{bar_chart("Reconciliation with the published log", verdict_rows, VERDICT_COLOURS)}
{bar_chart("What the network did", kind_rows, KIND_COLOURS)}
<div>{stacked_categories(results)}
<p><small>Colours as in “What the network did”; hover a segment for its count.</small></p></div>
</div>
<h2>Targets</h2>
<table><thead><tr><th>input</th><th>category</th><th>classification</th><th>verdict</th><th>evidence</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
{problem_html}
</body></html>
"""
