"""Line-level behaviour of each format parser, one table row per case."""

from __future__ import annotations

import pytest

from clearwall.formats import parse_text
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec

K = RuleKind

# (format, text, expected rules as (kind, value[, action]), issue message prefixes,
#  expected skip counts)
CASES = [
    # hosts
    ("hosts", "0.0.0.0 ads.example", [(K.EXACT, "ads.example")], [], {}),
    (
        "hosts",
        "127.0.0.1 a.example b.example # two",
        [(K.EXACT, "a.example"), (K.EXACT, "b.example")],
        [],
        {},
    ),
    (
        "hosts",
        ":: a.example\n::1 b.example",
        [(K.EXACT, "a.example"), (K.EXACT, "b.example")],
        [],
        {},
    ),
    ("hosts", "192.0.2.7\tTracker.Example.", [(K.EXACT, "tracker.example")], [], {}),
    ("hosts", "fe80::1%lo0 a.example", [(K.EXACT, "a.example")], [], {}),
    (
        "hosts",
        "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
        "255.255.255.255 broadcasthost\n0.0.0.0 0.0.0.0\n127.0.0.1 localhost.localdomain local",
        [],
        [],
        {"local": 8},
    ),
    (
        "hosts",
        "# header\n\n0.0.0.0 a.example",
        [(K.EXACT, "a.example")],
        [],
        {"comment": 1, "blank": 1},
    ),
    ("hosts", "a.example", [], ["not a hosts line: 'a.example' is not an IP address"], {}),
    ("hosts", "0.0.0.0", [], ["address without a host name"], {}),
    (
        "hosts",
        "0.0.0.0 bad..example good.example",
        [(K.EXACT, "good.example")],
        ["empty label"],
        {},
    ),
    (
        "hosts",
        "0.0.0.0 a.example\n0.0.0.0 A.example",
        [(K.EXACT, "a.example")],
        [],
        {"duplicate": 1},
    ),
    # domains
    (
        "domains",
        "ads.example\nTRACK.example  \n",
        [(K.EXACT, "ads.example"), (K.EXACT, "track.example")],
        [],
        {},
    ),
    (
        "domains",
        "# c\n! c\n\nads.example # why",
        [(K.EXACT, "ads.example")],
        [],
        {"comment": 2, "blank": 1},
    ),
    ("domains", "bücher.example", [(K.EXACT, "xn--bcher-kva.example")], [], {}),
    (
        "domains",
        "*.a.example\n+.b.example",
        [(K.SUBTREE, "a.example"), (K.SUBTREE, "b.example")],
        [],
        {},
    ),
    (
        "domains",
        "ok.example\na.example b.example",
        [(K.EXACT, "ok.example")],
        ["more than one name on the line"],
        {},
    ),
    ("domains", "-bad.example", [], ["invalid character or hyphen position"], {}),
    ("domains", "a" * 64 + ".example", [], ["label longer than 63 octets"], {}),
    ("domains", "x" * 5000, [], ["line too long"], {}),
    ("domains", "ok.example\nads.*.example", [(K.EXACT, "ok.example")], ["invalid character"], {}),
    ("domains", "_dmarc.example", [(K.EXACT, "_dmarc.example")], [], {}),
    # wildcard
    (
        "wildcard",
        "*.ads.example\n+.Track.example",
        [(K.SUBTREE, "ads.example"), (K.SUBTREE, "track.example")],
        [],
        {},
    ),
    ("wildcard", "plain.example", [(K.EXACT, "plain.example")], [], {}),
    ("wildcard", "*.ok.example\n*.", [(K.SUBTREE, "ok.example")], ["empty name"], {}),
    # adblock
    (
        "adblock",
        "[Adblock Plus 2.0]\n! Title: x\n||ads.example^",
        [(K.SUBTREE, "ads.example")],
        [],
        {"header": 1, "comment": 1},
    ),
    ("adblock", "@@||ok.example^", [(K.ALLOW_SUBTREE, "ok.example")], [], {}),
    (
        "adblock",
        "|exact.example^\n@@|ok.example^|",
        [(K.EXACT, "exact.example"), (K.ALLOW_EXACT, "ok.example")],
        [],
        {},
    ),
    ("adblock", "||*.below.example^", [(K.WILDCARD, "below.example")], [], {}),
    (
        "adblock",
        "||ads.example^$important\n||b.example^|",
        [(K.SUBTREE, "ads.example"), (K.SUBTREE, "b.example")],
        [],
        {},
    ),
    ("adblock", "||ADS.Example^", [(K.SUBTREE, "ads.example")], [], {}),
    (
        "adblock",
        "||ads.example^$client=192.168.0.1",
        [],
        ["unsupported modifier $client=192.168.0.1; rule skipped"],
        {},
    ),
    ("adblock", "||ads.example^$dnstype=AAAA", [], ["unsupported modifier $dnstype=AAAA"], {}),
    (
        "adblock",
        "||example.org^$denyallow=a.org",
        [],
        ["unsupported modifier $denyallow=a.org"],
        {},
    ),
    ("adblock", "||ads.example^$badfilter", [], ["unsupported modifier $badfilter"], {}),
    ("adblock", "@@||ads.example^$important,ctag=tv", [], ["unsupported modifier $ctag=tv"], {}),
    ("adblock", "/ads[0-9]+\\.example/", [], ["regular-expression rules are not supported"], {}),
    ("adblock", "||ads.example/banner.js", [], ["URL rule with a path"], {}),
    ("adblock", "|https://ads.example", [], ["'|name' without '^'"], {}),
    (
        "adblock",
        "||ads.example",
        [(K.SUBTREE, "ads.example")],
        ["'||name' without '^' also matches"],
        {},
    ),
    ("adblock", "||ad*.example^", [], ["unsupported pattern"], {}),
    (
        "adblock",
        "example.com##.banner\nexample.com#@#.ad\n#$#body{x}\nexample.com#?#div:has(a)\n"
        "example.com#%#window.x=1\nexample.com$$script\n##.generic",
        [],
        [],
        {"cosmetic": 7},
    ),
    (
        "adblock",
        "# comment\n0.0.0.0 hosts.example",
        [(K.EXACT, "hosts.example")],
        [],
        {"comment": 1},
    ),
    ("adblock", "plain.example", [(K.EXACT, "plain.example")], [], {}),
    ("adblock", "||bad_-.example^", [], ["invalid character or hyphen position"], {}),
    # dnsmasq
    ("dnsmasq", "address=/ads.example/#", [(K.SUBTREE, "ads.example")], [], {}),
    (
        "dnsmasq",
        "address=/ads.example/0.0.0.0\naddress=/b.example/",
        [(K.SUBTREE, "ads.example"), (K.SUBTREE, "b.example")],
        [],
        {},
    ),
    (
        "dnsmasq",
        "address=/a.example/b.example/::",
        [(K.SUBTREE, "a.example"), (K.SUBTREE, "b.example")],
        [],
        {},
    ),
    (
        "dnsmasq",
        "server=/ads.example/\nlocal=/b.example/",
        [(K.SUBTREE, "ads.example"), (K.SUBTREE, "b.example")],
        [],
        {},
    ),
    ("dnsmasq", "server=/corp.example/10.0.0.1", [], ["server=/…/10.0.0.1 forwards queries"], {}),
    ("dnsmasq", "address=/#/0.0.0.0", [], ["matches every domain"], {}),
    (
        "dnsmasq",
        "no-resolv\ncache-size=100",
        [],
        ["unsupported dnsmasq option 'cache-size'"],
        {"option": 1},
    ),
    ("dnsmasq", "address=ads.example", [], ["address= without a /domain/"], {}),
    ("dnsmasq", "address=/ads.example", [], ["address= without a closing '/'"], {}),
    # unbound
    (
        "unbound",
        'server:\nlocal-zone: "ads.example." always_null',
        [(K.SUBTREE, "ads.example")],
        [],
        {"clause": 1},
    ),
    (
        "unbound",
        'local-zone: "a.example." always_nxdomain',
        [(K.SUBTREE, "a.example", Action.NXDOMAIN)],
        [],
        {},
    ),
    (
        "unbound",
        "local-zone: a.example always_refuse # why",
        [(K.SUBTREE, "a.example", Action.REFUSED)],
        [],
        {},
    ),
    (
        "unbound",
        'local-zone: "a.example." static',
        [(K.SUBTREE, "a.example", Action.NXDOMAIN)],
        [],
        {},
    ),
    (
        "unbound",
        'local-zone: "a.example." deny',
        [(K.SUBTREE, "a.example", Action.REFUSED)],
        [],
        {},
    ),
    (
        "unbound",
        'local-zone: "a.example." redirect',
        [(K.SUBTREE, "a.example", Action.SINKHOLE)],
        [],
        {},
    ),
    (
        "unbound",
        'local-zone: "a.example." always_nodata',
        [(K.SUBTREE, "a.example", Action.NODATA)],
        [],
        {},
    ),
    ("unbound", 'local-zone: "ok.example." transparent', [(K.ALLOW_SUBTREE, "ok.example")], [], {}),
    (
        "unbound",
        'local-zone: "a.example." nodefault',
        [],
        ["unsupported local-zone type 'nodefault'"],
        {},
    ),
    ("unbound", 'local-zone: "a.example."', [], ["local-zone needs a name and a type"], {}),
    (
        "unbound",
        'local-data: "sink.example. A 0.0.0.0"',
        [(K.EXACT, "sink.example", Action.SINKHOLE)],
        ["local-data imported as a sinkhole"],
        {},
    ),
    ("unbound", "include: other.conf", [], ["include: is not followed"], {}),
    ("unbound", "server:\nverbosity: 1", [], [], {"clause": 1, "option": 1}),
    ("unbound", "server:\njust words", [], ["not an Unbound configuration line"], {"clause": 1}),
]


@pytest.mark.parametrize(("fmt", "text", "expected", "messages", "skipped"), CASES)
def test_parser_lines(
    fmt: str,
    text: str,
    expected: list[tuple[RuleKind, str] | tuple[RuleKind, str, Action]],
    messages: list[str],
    skipped: dict[str, int],
) -> None:
    result = parse_text(text, format=fmt, source="list.txt")
    assert result.format == fmt
    assert result.rules == [RuleSpec(*spec) for spec in expected]
    got = [issue.message for issue in result.issues]
    assert len(got) == len(messages), got
    for message, prefix in zip(got, messages, strict=True):
        assert message.startswith(prefix), (message, prefix)
    assert result.skipped == skipped
    assert result.lines == len(text.removesuffix("\n").split("\n"))


def test_invalid_lines_name_the_file_and_line_and_the_rest_is_imported() -> None:
    text = "good.example\nbad..example\n# comment\nalso-good.example\n-bad.example\n"
    result = parse_text(text, source="feeds/custom.txt")
    assert [rule.value for rule in result.rules] == ["good.example", "also-good.example"]
    assert [str(issue).split(": ")[0] for issue in result.issues] == [
        "feeds/custom.txt:2",
        "feeds/custom.txt:5",
    ]
    assert [issue.text for issue in result.issues] == ["bad..example", "-bad.example"]


def test_rules_keep_input_order_and_drop_duplicates() -> None:
    result = parse_text("c.example\na.example\nc.example\nb.example\n")
    assert [rule.value for rule in result.rules] == ["c.example", "a.example", "b.example"]
    assert result.skipped == {"duplicate": 1}


def test_crlf_and_bom_are_tolerated() -> None:
    result = parse_text("\ufeff0.0.0.0 a.example\r\n0.0.0.0 b.example\r\n")
    assert result.format == "hosts"
    assert [rule.value for rule in result.rules] == ["a.example", "b.example"]
