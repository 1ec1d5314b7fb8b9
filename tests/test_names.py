"""Name normalization: the one canonical form every list, rule and query is reduced to."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearwall.errors import InvalidName
from clearwall.policy.names import is_subdomain, normalize_name, to_unicode


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com  ", "example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("a-b.c", "a-b.c"),
        ("1.2.3.4.in-addr.arpa", "1.2.3.4.in-addr.arpa"),
    ],
)
def test_normalizes(text: str, expected: str) -> None:
    assert normalize_name(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "a..b",
        "-a.com",
        "a-.com",
        "a b.com",
        "a/b.com",
        "x" * 64 + ".com",
        ".".join(["abcdefghi"] * 26),  # 259 characters
        "xn--zz.com",  # invalid punycode
        "exa$mple.com",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(InvalidName):
        normalize_name(text)


def test_subdomain_is_label_aligned() -> None:
    assert is_subdomain("a.example.com", "example.com")
    assert is_subdomain("example.com", "example.com")
    assert not is_subdomain("badexample.com", "example.com")


def test_to_unicode_for_display() -> None:
    assert to_unicode("xn--bcher-kva.example") == "bücher.example"


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)


@given(st.lists(_label, min_size=1, max_size=6))
def test_normalize_is_idempotent_or_rejects(labels: list[str]) -> None:
    text = ".".join(labels)
    try:
        once = normalize_name(text)
    except InvalidName:
        return
    assert normalize_name(once) == once
    assert once == once.lower()
    assert not once.endswith(".")


@given(st.text(max_size=80))
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        result = normalize_name(text)
    except InvalidName:
        return
    assert result.isascii()
    idna.decode(result) if "xn--" in result else None
