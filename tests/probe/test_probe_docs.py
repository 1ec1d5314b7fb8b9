"""docs/probe.md stays true: its example input parses and its example record has our keys."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from clearwall.probe.classify import classify
from clearwall.probe.dnsmeasure import DNSMeasurement
from clearwall.probe.inputs import parse_plain_list, parse_target
from clearwall.probe.reconcile import reconcile
from clearwall.probe.records import TargetMeasurement
from clearwall.probe.report import to_record
from clearwall.probe.runner import ProbeResult

DOC = Path(__file__).resolve().parents[2] / "docs" / "probe.md"


def block(tag: str) -> str:
    match = re.search(rf"```{tag}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"no ```{tag} block in {DOC}"
    return match.group(1)


def test_documented_plain_list_parses() -> None:
    targets, problems = parse_plain_list(block("targets"))
    assert [t.name for t in targets] == ["example.org", "www.example.net"] and not problems


def test_documented_record_has_the_real_keys() -> None:
    documented = json.loads(block("json"))
    m = TargetMeasurement(
        parse_target("https://x.test/"),
        dt.datetime.now(dt.UTC),
        DNSMeasurement("udp://127.0.0.1:53", "x.test", failure="generic_timeout_error"),
    )
    c = classify(m)
    real = to_record(ProbeResult(m, c, reconcile(c, None, at=m.start_time)))
    assert set(documented) == set(real)
    assert set(documented["test_keys"]) == set(real["test_keys"])
    assert set(documented["clearwall"]) == set(real["clearwall"])
