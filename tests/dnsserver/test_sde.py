"""Structured DNS Errors over the encrypted transports, checked the way the draft tells a
client to process them (../shared/data/ede/draft-ietf-dnsop-structured-dns-error.md,
"Client Processing Response"), over DoT and DoH."""

from __future__ import annotations

import asyncio
import json

import dns.asyncquery
import dns.message
import dns.query
import pytest

from clearwall.dnsserver.gateway import Gateway
from clearwall.dnsserver.sde import sub_error
from clearwall.model import Category, EDECode
from dnsserver.encrypted import (
    NAME,
    TLSFiles,
    client_context,
    doh_url,
    encrypted_config,
    policy,
    port,
    tls_files,
)
from dnsserver.helpers import ede
from dnsserver.upstreams import NSD

# The draft's Sub-Error Code registry: which EDE codes each sub-error applies to.
APPLICABLE = {1: {15, 17}, 2: {15, 17}, 3: {15, 17}, 4: {15, 17}, 5: {15}, 6: {15}}
FILTERING_CODES = {15, 16, 17}  # Blocked, Censored, Filtered (step 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def gw(nsd: NSD, files: TLSFiles, gateway_factory) -> Gateway:  # type: ignore[no-untyped-def]
    return await gateway_factory(encrypted_config(nsd.port, files), policy())  # type: ignore[no-any-return]


def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    names = [k for k, _ in pairs]
    assert len(names) == len(set(names)), "I-JSON forbids duplicate names (RFC 7493)"
    return dict(pairs)


async def over(gw: Gateway, files: TLSFiles, transport: str, name: str) -> dns.message.Message:
    q = dns.message.make_query(name, "A", use_edns=0, payload=512)
    if transport == "dot":
        return await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: dns.query.tls(
                q,
                "127.0.0.1",
                port=port(gw, "dot"),
                ssl_context=client_context(files, ["dot"]),
                server_hostname=NAME,
                timeout=5,
            ),
        )
    return await dns.asyncquery.https(q, doh_url(gw), verify=client_context(files), timeout=5)


@pytest.mark.parametrize("transport", ["dot", "doh"])
@pytest.mark.parametrize(
    ("name", "code", "sub", "contacts"),
    [
        ("court.test", 16, None, ["mailto:appeals@court.example"]),
        ("malware.test", 15, 1, ["mailto:abuse@isp.test"]),
        ("filtered.test", 17, None, ["tel:+1-555-0100"]),  # the https: contact is left out
        ("long.test", 15, 1, ["mailto:abuse@isp.test"]),  # j and o kept: no size limit
    ],
)
async def test_client_processing_rules_hold(
    gw: Gateway,
    files: TLSFiles,
    transport: str,
    name: str,
    code: int,
    sub: int | None,
    contacts: list[str],
) -> None:
    r = await over(gw, files, transport, name)
    found = ede(r)
    assert found is not None
    info, text = found
    assert info == code and info in FILTERING_CODES  # step 2
    data = json.loads(text, object_pairs_hook=no_duplicates)  # step 3: I-JSON
    assert isinstance(data, dict)
    if "s" in data:  # step 4: applicable to the EDE code (never with Censored)
        assert info in APPLICABLE[data["s"]]
    assert data.get("s") == sub
    assert any(data.get(k) for k in ("c", "j", "s"))  # step 5
    assert data.get("c", []) == contacts  # step 6: registered schemes only
    # Over an authenticated encrypted channel the full object is sent: j and o (with
    # their language, l) even where a 512-octet UDP reply would have dropped them.
    assert data["j"] and data["o"] == "clearwall operator" and data["l"] == "en"


@pytest.mark.parametrize(
    ("category", "code", "sub"),
    [
        (Category.MALWARE, EDECode.BLOCKED, 1),
        (Category.BOTNET, EDECode.BLOCKED, 1),
        (Category.PHISHING, EDECode.BLOCKED, 2),
        (Category.SPAM, EDECode.BLOCKED, 3),
        (Category.OPERATOR_POLICY, EDECode.BLOCKED, 6),
        (Category.PHISHING, EDECode.FILTERED, 2),
        (Category.SUBSCRIBER_FILTER, EDECode.FILTERED, None),
        (Category.COURT_ORDER, EDECode.CENSORED, None),
        (Category.MALWARE, EDECode.CENSORED, None),
    ],
)
def test_sub_error_table(category: Category, code: EDECode, sub: int | None) -> None:
    got = sub_error(category, code)
    assert got == sub
    if got is not None:
        assert int(code) in APPLICABLE[got]
