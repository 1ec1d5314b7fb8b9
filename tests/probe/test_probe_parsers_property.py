"""Hypothesis on every probe parser: any input gives a value or a ProbeError, never a crash."""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.errors import ProbeError
from clearwall.probe.dnsmeasure import parse_sde, parse_server
from clearwall.probe.inputs import parse_citizenlab_csv, parse_plain_list, parse_target
from clearwall.probe.netmeasure import blocked_by_link, extract_title, parse_http

HEADER = "url,category_code,category_description,date_added,source,notes\n"


@given(st.text(max_size=200))
def test_parse_target_total(text: str) -> None:
    try:
        target = parse_target(text)
    except ProbeError:
        return
    assert target.scheme in ("http", "https") and 0 < target.port < 65536 and target.name


@given(st.lists(st.lists(st.text(max_size=30), max_size=8), max_size=20))
@settings(max_examples=200)
def test_citizenlab_rows_are_either_targets_or_problems(rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    text = HEADER + buffer.getvalue()
    targets, problems = parse_citizenlab_csv(text)
    lines = {p.line for p in problems} | {t.line for t in targets}
    assert len(lines) == len(targets) + len(problems)  # no row reported twice
    assert all(p.line >= 2 for p in problems)


@given(st.text(max_size=500))
def test_plain_list_total(text: str) -> None:
    targets, problems = parse_plain_list(text)
    assert all(t.line is not None and t.line >= 1 for t in targets)
    assert all(p.line >= 1 for p in problems)


@given(st.text(max_size=60))
def test_parse_server_total(text: str) -> None:
    try:
        server = parse_server(text)
    except ProbeError:
        return
    assert server.transport in ("udp", "tcp", "tls", "https") and 0 < server.port < 65536


@given(st.text(max_size=300))
def test_parse_sde_total(text: str) -> None:
    value = parse_sde(text)
    assert value is None or isinstance(value, dict)


@given(st.binary(max_size=400), st.booleans())
def test_parse_http_total(raw: bytes, truncated: bool) -> None:
    try:
        status, headers, body = parse_http(raw, truncated)
    except ValueError:
        return
    assert isinstance(status, int) and isinstance(headers, dict) and isinstance(body, bytes)
    blocked_by_link(headers)
    extract_title(body)


def test_parse_http_chunked_and_link() -> None:
    raw = (
        b"HTTP/1.1 451 Unavailable For Legal Reasons\r\nTransfer-Encoding: chunked\r\n"
        b'Link: <https://portal.example/orders/3>; rel="blocked-by"\r\n\r\n'
        b"7\r\n<title>\r\na\r\nBlocked</t\r\n6\r\nitle>x\r\n0\r\n\r\n"
    )
    status, headers, body = parse_http(raw, False)
    assert status == 451 and body == b"<title>Blocked</title>x"
    assert blocked_by_link(headers) == "https://portal.example/orders/3"
    assert extract_title(body) == "Blocked"
