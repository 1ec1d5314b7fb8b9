"""Property tests: no parser crashes on any text, names come out canonical, exports re-parse."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearwall.errors import FormatError, InvalidName
from clearwall.formats import FORMATS, export_domains, export_hosts, parse_text
from clearwall.formats.base import fast_normalize
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.policy.names import normalize_name

# Pieces of every format's syntax, so random lines reach past the first check.
FRAGMENTS = [
    "||",
    "|",
    "^",
    "@@",
    "$important",
    "$client=1.2.3.4",
    "##",
    "#@#",
    "!",
    "#",
    ";",
    "*.",
    "+.",
    ".",
    "..",
    "/",
    "address=",
    "server=",
    "local=",
    "local-zone:",
    "local-data:",
    "server:",
    '"',
    "always_null",
    "transparent",
    "0.0.0.0",
    "::1",
    "127.0.0.1",
    " ",
    "\t",
    "\n",
    "\r\n",
    "CNAME",
    "A",
    "AAAA",
    "TXT",
    "SOA",
    "NS",
    "$ORIGIN",
    "$TTL",
    "$INCLUDE",
    "(",
    ")",
    "rpz-passthru.",
    "rpz-drop.",
    "*.",
    "rpz-ip",
    "zz",
    "32",
    "rpz-nsdname",
    "IN",
    "3600",
    "example",
    "ads",
    "xn--",
    "bücher",
    "-",
    "_",
    "@",
    "\\",
    "\x00",
    "\ufeff",
    "localhost",
]
_line_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=30).map(
    "".join
)
_any_text = st.one_of(st.text(max_size=300), _line_text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_any_text, fmt=st.sampled_from(("auto", *FORMATS)))
def test_no_parser_crashes(text: str, fmt: str) -> None:
    try:
        result = parse_text(text, format=fmt)
    except FormatError:
        return
    assert result.format in FORMATS
    for rule in result.rules:
        if rule.kind.is_ip:
            assert str(ipaddress.ip_network(rule.value, strict=False)) == rule.value
        else:
            assert normalize_name(rule.value) == rule.value
    lines = len(text.split("\n"))
    assert all(1 <= issue.line <= lines for issue in result.issues)
    assert len(set(result.rules)) == len(result.rules)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9_.*-]{1,70}", fullmatch=True)))
def test_fast_normalize_agrees_with_normalize_name(text: str) -> None:
    assert_agrees_with_normalize_name(text)


def assert_agrees_with_normalize_name(text: str) -> None:
    try:
        expected = normalize_name(text)
    except InvalidName:
        try:
            fast_normalize(text)
        except InvalidName:
            return
        raise AssertionError(f"fast_normalize accepted {text!r}") from None
    assert fast_normalize(text) == expected


_label = st.from_regex(r"[a-z0-9_](?:[a-z0-9_-]{0,10}[a-z0-9_])?", fullmatch=True)
_name = st.lists(_label, min_size=1, max_size=5).map(".".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([RuleKind.EXACT, RuleKind.SUBTREE]), _name), max_size=40))
def test_domains_export_then_parse_is_identity(specs: list[tuple[RuleKind, str]]) -> None:
    rules = list(dict.fromkeys(RuleSpec(kind, name) for kind, name in specs))
    result = parse_text(export_domains(rules))
    assert result.rules == rules
    assert result.issues == []


@settings(max_examples=200, deadline=None)
@given(st.lists(_name, max_size=40), st.sampled_from(["0.0.0.0", "::", "127.0.0.1"]))
def test_hosts_export_then_parse_is_identity(names: list[str], address: str) -> None:
    rules = [RuleSpec(RuleKind.EXACT, name) for name in dict.fromkeys(names)]
    rules = [r for r in rules if r.value not in ("localhost", "local")]
    result = parse_text(export_hosts(rules, address=address), format="hosts")
    assert result.rules == rules
    assert result.issues == []


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=30).filter(lambda t: "\n" not in t and "\r" not in t)
        ),
        max_size=20,
    )
)
def test_wildcard_and_adblock_forms_agree(names: list[tuple[str]]) -> None:
    valid = []
    for (text,) in names:
        try:
            valid.append(normalize_name(text))
        except InvalidName:
            continue
    valid = [v for v in dict.fromkeys(valid) if v not in ("localhost", "local")]
    adblock = parse_text("".join(f"||{n}^\n" for n in valid), format="adblock")
    wildcard = parse_text("".join(f"*.{n}\n" for n in valid), format="wildcard")
    dnsmasq = parse_text("".join(f"address=/{n}/#\n" for n in valid), format="dnsmasq")
    assert adblock.rules == wildcard.rules == dnsmasq.rules
    assert [r.value for r in adblock.rules] == valid


@pytest.mark.parametrize(
    "text",
    [
        "a" * 63 + ".example",
        "a" * 64 + ".example",
        ".".join(["a" * 63] * 3) + "." + "b" * 61,  # 253 characters
        ".".join(["a" * 63] * 3) + "." + "b" * 62,  # 254 characters
        "-a.example",
        "a-.example",
        "a.-example",
        "a.example-",
        "a--b.example",
        "xn--bcher-kva.example",
        "xn--17g.ws",
        "_dmarc.example",
        "a..example",
        ".a.example",
        "a.example.",
        "A.Example",
        "a",
        "-",
        "_",
    ],
)
def test_fast_normalize_boundaries(text: str) -> None:
    assert_agrees_with_normalize_name(text)
