"""Tests of probe inputs: Citizen Lab CSV, plain lists, single URLs, bad rows with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.errors import ProbeError
from clearwall.probe.inputs import (
    load_targets,
    parse_citizenlab_csv,
    parse_plain_list,
    parse_target,
)


@pytest.mark.parametrize(
    ("text", "name", "scheme", "port", "path"),
    [
        ("example.com", "example.com", "http", 80, "/"),
        ("https://Example.COM/", "example.com", "https", 443, "/"),
        ("http://a.example:8080/x?y=1", "a.example", "http", 8080, "/x?y=1"),
        ("https://bücher.example/", "xn--bcher-kva.example", "https", 443, "/"),
        ("https://1.1.1.1/dns-query?dns=q8", "1.1.1.1", "https", 443, "/dns-query?dns=q8"),
        ("http://[2001:DB8::1]:8080/", "2001:db8::1", "http", 8080, "/"),
    ],
)
def test_parse_target(text: str, name: str, scheme: str, port: int, path: str) -> None:
    target = parse_target(text)
    assert (target.name, target.scheme, target.port, target.path) == (name, scheme, port, path)


@pytest.mark.parametrize(
    "text", ["", "ftp://example.com/", "http://", "http://exa mple.com/", "http://a:99999/"]
)
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ProbeError):
        parse_target(text)


def test_citizenlab_bad_rows_are_reported_with_line_numbers() -> None:
    text = (
        "url,category_code,category_description,date_added,source,notes\n"
        "https://good.example/,NEWS,News Media,2020-01-01,citizenlab,\n"
        "not a url at all,NEWS,News Media,2020-01-01,citizenlab,\n"
        "https://short.example/,NEWS\n"
        "\n"
        'http://ok.example/,HUMR,Human Rights Issues,2020-01-01,citizenlab,"a, b"\n'
    )
    targets, problems = parse_citizenlab_csv(text)
    assert [(t.name, t.category_code, t.line) for t in targets] == [
        ("good.example", "NEWS", 2),
        ("ok.example", "HUMR", 6),
    ]
    assert [p.line for p in problems] == [3, 4]
    assert "columns" in problems[1].reason


def test_citizenlab_requires_header() -> None:
    with pytest.raises(ProbeError):
        parse_citizenlab_csv("https://a.example/,NEWS,x,y,z,\n")


def test_plain_list_comments_and_bad_lines() -> None:
    targets, problems = parse_plain_list(
        "# sites\nexample.com\n\nhttps://b.example/ # b\nbad..name\n"
    )
    assert [t.name for t in targets] == ["example.com", "b.example"]
    assert [p.line for p in problems] == [5]


def test_real_global_list(data_dir: Path) -> None:
    targets, problems = load_targets(data_dir / "citizenlab" / "global.csv")
    assert len(targets) + len(problems) == 1721
    assert len(targets) > 1700
    assert all(t.category_code for t in targets)


def test_unreadable_input(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot read"):
        load_targets(tmp_path / "missing.csv")


def test_ip_literal_targets_have_no_dns_step() -> None:
    assert parse_target("https://1.1.1.1/").is_ip
    assert not parse_target("https://one.one.one.one/").is_ip
