"""The hand-written codec against dnspython: same facts from the same bytes (hypothesis)."""

from __future__ import annotations

import contextlib
import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.dnsserver import wire
from clearwall.errors import DNSWireError

LABEL = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=20,
)
NAMES = st.lists(LABEL, min_size=1, max_size=6).map(".".join)
TYPES = st.sampled_from(
    [
        "A",
        "AAAA",
        "MX",
        "TXT",
        "NS",
        "HTTPS",
        "SVCB",
        "CNAME",
        "SOA",
        "PTR",
        "SRV",
        "CAA",
        "DS",
        "DNSKEY",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    name=NAMES,
    rdtype=TYPES,
    edns=st.sampled_from([-1, 0]),
    payload=st.integers(0, 65535),
    do=st.booleans(),
    rd=st.booleans(),
    cd=st.booleans(),
    cookie=st.booleans(),
)
def test_parse_query_agrees_with_dnspython(
    name: str, rdtype: str, edns: int, payload: int, do: bool, rd: bool, cd: bool, cookie: bool
) -> None:
    options = [dns.edns.GenericOption(10, b"\x01" * 8)] if cookie and edns == 0 else []
    msg = dns.message.make_query(
        name, rdtype, use_edns=edns, payload=payload, want_dnssec=do and edns == 0, options=options
    )
    msg.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    data = msg.to_wire()
    q = wire.parse_query(data)
    back = dns.message.from_wire(data)
    assert q.qtype == back.question[0].rdtype
    assert q.qclass == back.question[0].rdclass
    assert q.edns == (back.edns >= 0)
    if q.edns:
        assert q.payload == max(back.payload, 512)
        assert q.do == bool(back.ednsflags & dns.flags.DO)
    assert wire.read_name(data, 12)[0] == back.question[0].name.to_text(True).lower()
    assert data[12 : q.qend] == back.question[0].name.to_wire() + data[q.name_end : q.qend]
    assert q.bits & 0x01 == rd and bool(q.bits & 0x10) == cd


def _reply(
    name: str,
    rrs: list[tuple[str, str, int, str]],
    rcode: int = 0,
    authority: list[tuple[str, str, int, str]] = (),
) -> bytes:  # type: ignore[assignment]
    q = dns.message.make_query(name, "A")
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for owner, rdtype, ttl, text in rrs:
        r.answer.append(dns.rrset.from_text(owner + ".", ttl, "IN", rdtype, text))
    for owner, rdtype, ttl, text in authority:
        r.authority.append(dns.rrset.from_text(owner + ".", ttl, "IN", rdtype, text))
    return r.to_wire()  # type: ignore[no-any-return]


@settings(max_examples=100, deadline=None)
@given(
    name=NAMES,
    target=NAMES,
    ttls=st.lists(st.integers(0, 2**31 - 1), min_size=3, max_size=3),
    a=st.ip_addresses(v=4),
    aaaa=st.ip_addresses(v=6),
)
def test_scan_reply_agrees_with_dnspython(
    name: str, target: str, ttls: list[int], a: object, aaaa: object
) -> None:
    data = _reply(
        name,
        [
            (name, "CNAME", ttls[0], target + "."),
            (target, "A", ttls[1], str(a)),
            (target, "AAAA", ttls[2], str(aaaa)),
        ],
    )
    scan = wire.scan_reply(data)
    assert scan.cnames == (target.lower(),)
    assert [ipaddress.ip_address(x) for x in scan.addresses] == [a, aaaa]
    assert scan.min_ttl == min(ttls)
    # Patching every TTL through the offsets is what dnspython then reads.
    patched = wire.set_ttls(data, scan.ttl_offsets, 7)
    assert {rrset.ttl for rrset in dns.message.from_wire(patched).answer} == {7}
    aged = wire.patch_ttls(data, scan.ttl_offsets, wire.read_ttls(data, scan.ttl_offsets), 5)
    assert [r.ttl for r in dns.message.from_wire(aged).answer] == [max(t - 5, 0) for t in ttls]


def test_scan_reply_negative_soa() -> None:
    data = _reply(
        "x.example",
        [],
        rcode=dns.rcode.NXDOMAIN,
        authority=[("example", "SOA", 3600, "ns.example. hm.example. 1 2 3 4 300")],
    )
    scan = wire.scan_reply(data)
    assert scan.rcode == dns.rcode.NXDOMAIN and scan.soa_ttl == 300


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_wire_errors(data: bytes) -> None:
    for parse in (wire.parse_query, wire.scan_reply):
        with contextlib.suppress(DNSWireError):
            parse(data)


def test_compression_loop_is_rejected() -> None:
    # A reply whose answer owner points to itself.
    header = b"\x00\x01\x81\x80\x00\x00\x00\x01\x00\x00\x00\x00"
    loop = header + b"\xc0\x0c" + b"\x00\x05\x00\x01\x00\x00\x00\x10\x00\x02\xc0\x0c"
    with pytest.raises(DNSWireError):
        wire.read_name(loop, 12)
    with pytest.raises(DNSWireError):
        wire.scan_reply(loop)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        b"\x00\x01\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01",  # qdcount 2
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab",  # label past the end
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01",  # truncated qtype
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01junk",
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01\x00\x00\x29",
        b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + b"\x3f"
        + b"a" * 63
        + b"\x3f"
        + b"a" * 63
        + b"\x3f"
        + b"a" * 63
        + b"\x3f"
        + b"a" * 63
        + b"\x00\x00\x01\x00\x01",
    ],
)
def test_malformed_queries(data: bytes) -> None:
    with pytest.raises(DNSWireError):
        wire.parse_query(data)


def test_labels_with_dots_cannot_pose_as_two_labels() -> None:
    name = b"\x0bevil.domain\x04test\x00"
    assert wire.read_name(name, 0)[0] == "evil\\.domain.test"


def _question(name: str, rdtype: int, rdclass: int = 1) -> bytes:
    return wire.text_to_wire(name) + rdtype.to_bytes(2, "big") + rdclass.to_bytes(2, "big")


@pytest.mark.parametrize(
    ("ours", "theirs", "same"),
    [
        (_question("www.example", 65), _question("www.example", 65), True),
        (_question("www.example", 65), _question("WwW.ExAmPlE", 65), True),
        # QTYPE and QCLASS are numbers, never folded: 65 'A' vs 97 'a', 0x4101 vs 0x6101.
        (_question("www.example", 97), _question("www.example", 65), False),
        (_question("www.example", 65), _question("www.example", 97), False),
        (_question("www.example", 0x6101), _question("www.example", 0x4101), False),
        (_question("www.example", 1, 0x61), _question("www.example", 1, 0x41), False),
        (_question("www.example", 1), _question("www.exampla", 1), False),
        (_question("www.example", 1), _question("www.example.x", 1), False),
        (_question("www.example", 1), _question("www.example", 1)[:-1], False),
    ],
)
def test_question_equal_folds_only_the_name(ours: bytes, theirs: bytes, same: bool) -> None:
    reply = b"\x12\x34\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + theirs
    assert wire.question_equal(reply, ours) is same


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(
        st.from_regex(r"[a-z]{1,20}(\.[a-z]{1,20}){0,3}", fullmatch=True), max_size=6, unique=True
    ),
    edns=st.booleans(),
    existing=st.one_of(st.none(), st.integers(0, 300)),
    ede_text=st.text(
        st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs",)),
        max_size=80,
    ),
    block=st.sampled_from([0, 1, 128, 468, 1000]),
)
def test_pad_reply_agrees_with_dnspython(
    names: list[str], edns: bool, existing: int | None, ede_text: str, block: int
) -> None:
    """RFC 7830/8467: the padded reply parses the same but for its Padding option, whose
    length makes the whole a multiple of the block; no OPT, no padding."""
    query = dns.message.make_query("pad.test", "A", use_edns=0 if edns else False)
    reply = dns.message.make_response(query)
    for name in names:
        reply.answer.append(dns.rrset.from_text(f"{name}.pad.test.", 60, "IN", "A", "192.0.2.1"))
    if edns:
        options: list[dns.edns.Option] = [dns.edns.EDEOption(15, ede_text or None)]
        if existing is not None:
            options.append(dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * existing))
        reply.use_edns(0, options=options)
    data = reply.to_wire()
    padded = wire.pad_reply(data, block)
    if not edns or block <= 0:
        assert padded == data or not edns
        if not edns:
            assert padded == data
        return
    assert len(padded) % block == 0 or len(padded) + block > 65535
    again = dns.message.from_wire(padded)
    assert again.answer == reply.answer and again.id == reply.id

    def others(options: object) -> list[bytes]:
        return [o.to_wire() for o in options if o.otype != dns.edns.OptionType.PADDING]  # type: ignore[attr-defined]

    kept = others(again.options)
    assert kept == others(reply.options)
    assert sum(o.otype == dns.edns.OptionType.PADDING for o in again.options) == 1
    stripped = dns.message.from_wire(wire.strip_padding(padded))
    assert not any(o.otype == dns.edns.OptionType.PADDING for o in stripped.options)
    assert others(stripped.options) == kept
