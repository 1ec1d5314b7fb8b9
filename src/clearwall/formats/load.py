"""Reading a list from text or a file: sniffing, decoding, streaming, dispatch by format."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from clearwall.errors import FormatError
from clearwall.formats import adblock, dnsmasq, domains, hosts, rpz, unbound, wildcard
from clearwall.formats.base import Collector, ParseResult
from clearwall.formats.detect import SAMPLE, classify, detect_format, meaningful

Parser = Callable[[Iterable[str], Collector], None]

PARSERS: dict[str, Parser] = {
    hosts.NAME: hosts.parse,
    domains.NAME: domains.parse,
    wildcard.NAME: wildcard.parse,
    adblock.NAME: adblock.parse,
    dnsmasq.NAME: dnsmasq.parse,
    unbound.NAME: unbound.parse,
    rpz.NAME: rpz.parse,
}

FORMATS: tuple[str, ...] = tuple(PARSERS)
"""Every format name ``parse_text``/``parse_file`` accept besides ``"auto"``."""

CHUNK = 1 << 20
_HEAD_LINES = 5000  # raw lines buffered at most while looking for SAMPLE meaningful ones


def _sniff(head: bytes, source: str) -> None:
    """Refuse input that is binary rather than text (NUL bytes or mostly undecodable)."""
    if b"\x00" in head:
        raise FormatError(f"{source} is binary data, not a blocklist")
    text = head.decode("utf-8", "replace")
    if text.count("\ufffd") * 10 > len(text):
        raise FormatError(f"{source} is not UTF-8 text, not a blocklist")


def _stream(f: BinaryIO, progress: Callable[[int], None] | None) -> Iterator[str]:
    """The lines of ``f`` (without line ends), reading a chunk at a time."""
    total = 0
    tail = b""
    while chunk := f.read(CHUNK):
        total += len(chunk)
        data = tail + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
        else:
            tail = data[cut + 1 :]
            yield from data[:cut].decode("utf-8", "replace").split("\n")
        if progress is not None:
            progress(total)
    if tail:
        yield tail.decode("utf-8", "replace")


def _run(lines: Iterator[str], fmt: str, source: str) -> ParseResult:
    if fmt != "auto" and fmt not in PARSERS:
        raise FormatError(f"unknown list format {fmt!r}; choose one of {', '.join(FORMATS)}")
    head: list[str] = []
    sample: list[str] = []
    for line in lines:
        head.append(line)
        stripped = meaningful(line)
        if stripped is not None:
            sample.append(stripped)
        if len(sample) >= SAMPLE or len(head) >= _HEAD_LINES:
            break
    if fmt == "auto":
        fmt = detect_format(head, source)
    elif sample and not any(classify(line) for line in sample):
        # An explicit format skips the vote, not the check that this is a list at all.
        raise FormatError(f"{source} is not a blocklist in any supported format")
    out = Collector(source)
    PARSERS[fmt](itertools.chain(head, lines), out)
    return out.result(fmt)


def parse_text(text: str, format: str = "auto", source: str = "<input>") -> ParseResult:
    """Parse a list held in memory; ``format`` is one of ``FORMATS`` or ``"auto"``.

    Raises FormatError when the text is not a list at all; bad lines become issues.
    """
    _sniff(text[:65536].encode("utf-8", "surrogatepass"), source)
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _run(iter(lines), format, source)


def parse_file(
    path: Path, format: str = "auto", progress: Callable[[int], None] | None = None
) -> ParseResult:
    """Parse a list file, streaming it; ``progress(bytes_read)`` is called per chunk.

    Issues name the file as ``str(path)``. Raises FormatError when the file is not a list.
    """
    source = str(path)
    with open(path, "rb") as f:
        head = f.read(65536)
        _sniff(head, source)
        f.seek(3 if head.startswith(b"\xef\xbb\xbf") else 0)
        return _run(_stream(f, progress), format, source)


def parse_rules(text: str, format: str, source: str) -> ParseResult:
    """``parse_text``, refusing (FormatError) a non-empty text of which not one line is a
    rule: publishing an empty order from a mistaken upload or a changed download would
    only put noise on the log."""
    result = parse_text(text, format=format, source=source)
    if text.strip() and not result.rules and result.issues:
        first = result.issues[0]
        raise FormatError(
            f"no rule found in {source}: {len(result.issues)} line(s) skipped, "
            f"first at line {first.line}: {first.message}"
        )
    return result
