"""Format auto-detection, and refusal of input that is not a list at all."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from clearwall.errors import FormatError
from clearwall.formats import detect_format, parse_file, parse_text

DETECT = [
    ("0.0.0.0 a.example\n127.0.0.1 b.example", "hosts"),
    ("# list\na.example\nb.example", "domains"),
    ("*.a.example\n*.b.example", "wildcard"),
    ("+.a.example\n+.b.example", "wildcard"),
    ("a.example\n*.b.example\nc.example", "domains"),  # majority decides plain vs wildcard
    ("*.a.example\nb.example\n*.c.example", "wildcard"),
    ("[Adblock Plus 2.0]\n! c\n||a.example^", "adblock"),
    ("@@||a.example^\nexample.com##.ad", "adblock"),
    ("address=/a.example/#\nserver=/b.example/", "dnsmasq"),
    ('server:\nlocal-zone: "a.example." always_null', "unbound"),
    ("$TTL 60\n@ SOA a. b. 1 2 3 4 5\na.example CNAME .", "rpz"),
    ("a.example CNAME .\n*.a.example CNAME .", "rpz"),
    ("rpz 3600 IN SOA ns. h. (\n 1 2 3 4 5 )\n IN NS ns.\nx CNAME .", "rpz"),
    ("", "domains"),  # an empty list is still a list
    ("# only comments\n! here", "domains"),
]


@pytest.mark.parametrize(("text", "fmt"), DETECT)
def test_detect_format(text: str, fmt: str) -> None:
    assert detect_format(text) == fmt
    assert detect_format(text.split("\n")) == fmt
    assert parse_text(text).format == fmt


NOT_LISTS = [
    "<!DOCTYPE html>\n<html><head><title>404</title></head>\n<body>Not found</body></html>",
    json.dumps({"domains": ["a.example", "b.example"], "version": 2}, indent=2),
    "url,category_code\nhttp://a.example/,NEWS\nhttp://b.example/,PORN",
    "1,google.com\n2,youtube.com\n3,facebook.com",
    "The quick brown fox jumps over the lazy dog.\nAnother sentence of prose here.",
    "services:\n  web:\n    image: nginx\n    ports: ['80:80']",
]


@pytest.mark.parametrize("text", NOT_LISTS)
@pytest.mark.parametrize("fmt", ["auto", "hosts", "domains", "adblock", "rpz"])
def test_text_that_is_not_a_list_fails_whole(text: str, fmt: str) -> None:
    with pytest.raises(FormatError, match="not a blocklist"):
        parse_text(text, format=fmt, source="upload.txt")


def test_mostly_garbage_with_a_few_names_fails() -> None:
    text = "\n".join(["<div>x</div>"] * 150 + ["a.example"] * 50)
    with pytest.raises(FormatError, match=r"only 50 of 200 sampled lines look like domains"):
        detect_format(text)


def test_detection_samples_the_head_then_parses_everything() -> None:
    text = "\n".join([f"n{i}.example" for i in range(300)] + ["||late.example^"])
    result = parse_text(text)
    assert result.format == "domains"
    assert len(result.rules) == 300
    assert [(i.line, i.message[:30]) for i in result.issues] == [
        (301, "invalid character or hyphen po")
    ]


BINARY = [
    gzip.compress(b"0.0.0.0 a.example\n" * 100),
    bytes(range(256)) * 4,
    "ads.example\n".encode("utf-16"),
    b"\xff\xfe\xfd" * 1000,
]


@pytest.mark.parametrize("blob", BINARY)
def test_binary_files_fail_whole(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(blob)
    with pytest.raises(FormatError, match=r"not a blocklist|binary|not UTF-8"):
        parse_file(path)


def test_unknown_format_name_is_refused() -> None:
    with pytest.raises(FormatError, match="unknown list format 'pihole'"):
        parse_text("a.example", format="pihole")


def test_file_with_bom_crlf_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbf||a.example^\r\n||b.example^")
    result = parse_file(path)
    assert result.format == "adblock"
    assert [r.value for r in result.rules] == ["a.example", "b.example"]
    assert result.lines == 2


def test_stream_handles_lines_across_chunk_boundaries(tmp_path: Path) -> None:
    from clearwall.formats import load

    names = [f"name-{i}.example" for i in range(200_000)]  # ~3.6 MB: several chunks
    path = tmp_path / "big.txt"
    path.write_text("\n".join(names) + "\n")
    assert path.stat().st_size > 3 * load.CHUNK
    result = parse_file(path)
    assert [r.value for r in result.rules] == names
    assert result.issues == []
