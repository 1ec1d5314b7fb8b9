"""Property tests: no parser crashes on any text, names come out canonical, exports re-parse."""

from __future__ import annotations

import importlib
import ipaddress
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clearwall.errors import FormatError, InvalidName
from clearwall.formats import FORMATS, export_domains, export_hosts, parse_text
from clearwall.formats.base import Collector, fast_normalize
from clearwall.model import Action, RuleKind
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


# One line per name in each format, and the rule kind that line means.
LINE_FORMS = {
    "hosts": ("0.0.0.0 {}", RuleKind.EXACT),
    "domains": ("{}", RuleKind.EXACT),
    "wildcard": ("*.{}", RuleKind.SUBTREE),
    "adblock": ("||{}^", RuleKind.SUBTREE),
    "dnsmasq": ("address=/{}/#", RuleKind.SUBTREE),
    "unbound": ('local-zone: "{}." always_null', RuleKind.SUBTREE),
    "rpz": ("{0} CNAME .\n*.{0} CNAME .", RuleKind.SUBTREE),
}
_raw_name = st.one_of(
    st.text(min_size=1, max_size=30),
    st.lists(
        st.from_regex(r"[A-Za-z0-9_ÄÖÜäöüßé-]{1,12}", fullmatch=True), min_size=1, max_size=4
    ).map(".".join),
)
# Characters some format gives a meaning of its own; names holding them are tested elsewhere.
_SYNTAX = set('#!;"$/|^@*+()\\') | {" ", "\t", "\n", "\r", "\x00", "\ufeff"}


@settings(max_examples=200, deadline=None)
@given(st.lists(_raw_name, max_size=20), st.sampled_from(sorted(LINE_FORMS)))
def test_every_format_reads_valid_names_as_their_canonical_form(raw: list[str], fmt: str) -> None:
    valid: list[tuple[str, str]] = []
    for text in raw:
        if _SYNTAX & set(text) or text != text.strip() or text.endswith("."):
            continue
        try:
            name = normalize_name(text)
        except InvalidName:
            continue
        if name not in ("localhost", "local", "0.0.0.0"):
            valid.append((text, name))
    template, kind = LINE_FORMS[fmt]
    text = "".join(template.format(t) + "\n" for t, _ in valid)
    if fmt == "rpz":
        text = "$ORIGIN rpz.test.\n@ SOA ns.test. h.test. 1 2 3 4 5\n" + text
    result = parse_text(text, format=fmt)
    action = Action.NXDOMAIN if fmt == "rpz" else None
    names = dict.fromkeys(n for _, n in valid)
    assert result.rules == [RuleSpec(kind, n, action) for n in names]
    assert result.issues == []


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


# Lines of each batched format: clean ones (taken by the one-regex batch path) and
# every kind of line that needs the per-line path.
POOLS = {
    "domains": [
        "a.example",
        "b.example ",
        "*.c.example",
        "+.d.example",
        "# c",
        "",
        "Upper.Example",
        "bücher.example",
        "xn--bcher-kva.example",
        "xn--17g.ws",
        "bad..example",
        "e.example\r",
    ],
    "adblock": [
        "||a.example^",
        "||b.example^ ",
        "! c",
        "@@||a.example^",
        "||xn--17g.ws^",
        "||bücher.example^",
        "||c.example^$important",
        "x.example##.ad",
        "||-bad.example^",
        "||xn--bcher-kva.example^",
        "[Adblock Plus 2.0]",
    ],
    "hosts": [
        "0.0.0.0 a.example",
        "127.0.0.1 b.example",
        "0.0.0.0 localhost",
        ":: c.example",
        "0.0.0.0 d.example e.example",
        "# c",
        "0.0.0.0 xn--17g.ws",
        "0.0.0.0 0.0.0.0",
        "0.0.0.0 xn--bcher-kva.example",
        "0.0.0.0 bad..example",
    ],
    "dnsmasq": [
        "address=/a.example/#",
        "server=/b.example/",
        "local=/c.example/",
        "address=/d.example/0.0.0.0",
        "address=/e.example/",
        "# c",
        "address=/xn--17g.ws/#",
        "server=/f.example/10.0.0.1",
        "address=/x.example/y.example/#",
    ],
    "unbound": [
        'local-zone: "a.example." always_null',
        'local-zone: "b.example." always_nxdomain',
        "server:",
        'local-zone: "xn--17g.ws." always_null',
        "# c",
        'local-zone: "c.example." transparent',
        'local-zone: "Upper.Example." always_null',
    ],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(fmt="domains", seed=1, size=6000, dirt=0.001)
@example(fmt="adblock", seed=2, size=5000, dirt=0.05)
@example(fmt="hosts", seed=3, size=4500, dirt=0.001)
@example(fmt="dnsmasq", seed=4, size=4097, dirt=0.0)
@example(fmt="unbound", seed=5, size=6000, dirt=0.5)
@given(
    fmt=st.sampled_from(sorted(POOLS)),
    seed=st.integers(0, 2**32),
    size=st.integers(0, 6000),
    dirt=st.sampled_from([0.0, 0.001, 0.05, 0.5]),
)
def test_batch_path_equals_line_by_line(fmt: str, seed: int, size: int, dirt: float) -> None:
    rng = random.Random(seed)
    pool = POOLS[fmt]
    clean, dirty = pool[:1], pool[1:]
    lines = [
        rng.choice(dirty)
        if rng.random() < dirt
        else clean[0].replace("a.example", f"n{rng.randrange(size + 1)}.example")
        for _ in range(size)
    ]
    module = importlib.import_module(f"clearwall.formats.{fmt}")
    batched = Collector("x")
    module.parse(lines, batched)
    reference = Collector("x")
    module._lines(lines, 1, reference)
    reference.lines = len(lines)
    got, want = batched.result(fmt), reference.result(fmt)
    assert got.rules == want.rules
    assert got.issues == want.issues
    assert got.skipped == want.skipped
    assert got.lines == want.lines
