"""Every real list in shared/data parses to its documented format and record count."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.errors import FormatError
from clearwall.formats import ParseResult, parse_file
from clearwall.model import RuleKind

# (file, detected format, rules, rule kind) with counts from shared/data/README.md.
REAL_LISTS = [
    ("stevenblack/unified-hosts.trimmed-domains.txt", "domains", 83_806, RuleKind.EXACT),
    ("hagezi/light.adblock.txt", "adblock", 106_483, RuleKind.SUBTREE),
    ("hagezi/light.dnsmasq.txt", "dnsmasq", 106_483, RuleKind.SUBTREE),
    ("hagezi/light.domains.txt", "domains", 176_033, RuleKind.EXACT),
    ("hagezi/light.wildcard.txt", "wildcard", 106_483, RuleKind.SUBTREE),
    ("hagezi/personal.adblock.txt", "adblock", 9_642, RuleKind.SUBTREE),
    ("hagezi/personal.dnsmasq.txt", "dnsmasq", 9_642, RuleKind.SUBTREE),
    ("hagezi/personal.domains.txt", "domains", 12_274, RuleKind.EXACT),
    ("hagezi/personal.hosts.txt", "hosts", 12_274, RuleKind.EXACT),
    ("hagezi/personal.unbound.conf", "unbound", 9_642, RuleKind.SUBTREE),
    ("hagezi/personal.wildcard.txt", "wildcard", 9_642, RuleKind.SUBTREE),
    ("oisd/oisd_small.plus-wildcard.txt", "wildcard", 48_916, RuleKind.SUBTREE),
    # README: 190,215 entries; two of them are not valid IDNA 2008 names (see below).
    ("blocklistproject/phishing.domains.txt", "domains", 190_213, RuleKind.EXACT),
    ("blocklistproject/ransomware.hosts.txt", "hosts", 1_904, RuleKind.EXACT),
    ("blocklistproject/ransomware.domains.txt", "domains", 1_904, RuleKind.EXACT),
    ("blocklistproject/ransomware.dnsmasq.txt", "dnsmasq", 1_904, RuleKind.SUBTREE),
    ("blocklistproject/ransomware.adguard.txt", "adblock", 1_904, RuleKind.SUBTREE),
    ("rpz/hagezi.native.roku.rpz.txt", "rpz", 73, RuleKind.SUBTREE),
]

# The only lines of the real lists that are not imported, each for a stated reason.
KNOWN_ISSUES = {
    "blocklistproject/phishing.domains.txt": [
        (184_735, "invalid punycode label 'xn--17g'"),  # U+21D4 is not allowed by IDNA 2008
        (187_697, "invalid punycode label 'xn--17g'"),
    ],
}

_cache: dict[str, ParseResult] = {}


def parsed(data_dir: Path, name: str) -> ParseResult:
    """Parse a real list once per session (the big ones take a second each)."""
    if name not in _cache:
        _cache[name] = parse_file(data_dir / name)
    return _cache[name]


@pytest.mark.parametrize(("name", "fmt", "count", "kind"), REAL_LISTS)
def test_real_list_parses_to_documented_count(
    data_dir: Path, name: str, fmt: str, count: int, kind: RuleKind
) -> None:
    result = parsed(data_dir, name)
    assert result.format == fmt
    assert len(result.rules) == count
    assert {rule.kind for rule in result.rules} == {kind}
    assert [(i.line, i.message.split(":")[0]) for i in result.issues] == KNOWN_ISSUES.get(name, [])
    assert all(i.source == str(data_dir / name) for i in result.issues)


def test_phishing_invalid_lines_are_reported_precisely(data_dir: Path) -> None:
    result = parsed(data_dir, "blocklistproject/phishing.domains.txt")
    assert [(i.line, i.text) for i in result.issues] == [
        (184_735, "www.xn--17g.ws"),
        (187_697, "xn--17g.ws"),
    ]
    assert str(result.issues[0]).startswith(
        f"{data_dir / 'blocklistproject/phishing.domains.txt'}:184735: invalid punycode"
    )


def test_skipped_lines_are_counted(data_dir: Path) -> None:
    result = parsed(data_dir, "stevenblack/unified-hosts.trimmed-domains.txt")
    assert result.lines == 90_925
    assert result.skipped == {"comment": 4_603, "blank": 2_516}
    assert result.lines == len(result.rules) + sum(result.skipped.values())


def names(result: ParseResult) -> set[str]:
    return {rule.value for rule in result.rules}


@pytest.mark.parametrize(
    "group",
    [
        ["hagezi/light.adblock.txt", "hagezi/light.dnsmasq.txt", "hagezi/light.wildcard.txt"],
        [
            "hagezi/personal.adblock.txt",
            "hagezi/personal.dnsmasq.txt",
            "hagezi/personal.wildcard.txt",
            "hagezi/personal.unbound.conf",
        ],
        ["blocklistproject/ransomware.adguard.txt", "blocklistproject/ransomware.dnsmasq.txt"],
        ["blocklistproject/ransomware.hosts.txt", "blocklistproject/ransomware.domains.txt"],
    ],
)
def test_equivalent_forms_give_identical_rule_sets(data_dir: Path, group: list[str]) -> None:
    first, *rest = (parsed(data_dir, name) for name in group)
    for other in rest:
        assert set(other.rules) == set(first.rules)
        assert other.rules == first.rules  # same order too: the lists are sorted alike


def test_ransomware_names_agree_across_all_four_forms(data_dir: Path) -> None:
    forms = ["hosts", "domains", "dnsmasq", "adguard"]
    sets = [names(parsed(data_dir, f"blocklistproject/ransomware.{form}.txt")) for form in forms]
    assert all(s == sets[0] for s in sets)
    assert len(sets[0]) == 1_904


def test_hagezi_domains_file_lists_subdomains_the_subtree_forms_imply(data_dir: Path) -> None:
    # The domains form is exact-match and spells out www. variants; every name in it
    # lies at or below a name of the adblock form, which covers subdomains, except 18
    # "www." names the upstream adblock form leaves out (their parent is not listed).
    exact = names(parsed(data_dir, "hagezi/personal.domains.txt"))
    subtree = names(parsed(data_dir, "hagezi/personal.adblock.txt"))
    assert subtree <= exact

    def covered(name: str) -> bool:
        labels = name.split(".")
        return any(".".join(labels[i:]) in subtree for i in range(len(labels)))

    uncovered = [name for name in exact if not covered(name)]
    assert len(uncovered) == 18
    assert all(name.startswith("www.") for name in uncovered)


def test_unbound_always_null_keeps_the_orders_action(data_dir: Path) -> None:
    result = parsed(data_dir, "hagezi/personal.unbound.conf")
    assert {rule.action for rule in result.rules} == {None}
    assert result.skipped == {"comment": 11, "clause": 1}


NOT_LISTS = [
    "toplists/alexa-top-65535-2023-02-09.csv",
    "toplists/moz-top500.top-sites-1.1.222.json",
    "citizenlab/global.csv",
    "citizenlab/00-LEGEND-country_codes.csv",
    "ede/sde-example-minified.json",
    "ede/draft-ietf-dnsop-structured-dns-error.md",
    "pcap/dnsjit.dns.pcap",
    "pcap/tcpdump.dns_udp.pcap",
    "rpz/unbound.rpz_qname.rpl",
]


@pytest.mark.parametrize("name", NOT_LISTS)
def test_real_files_that_are_not_lists_fail_whole(data_dir: Path, name: str) -> None:
    with pytest.raises(FormatError, match="not a blocklist"):
        parse_file(data_dir / name)


def test_progress_reports_bytes_read(data_dir: Path) -> None:
    path = data_dir / "hagezi/light.domains.txt"
    seen: list[int] = []
    parse_file(path, progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == path.stat().st_size
