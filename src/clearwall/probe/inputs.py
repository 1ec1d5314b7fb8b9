"""Probe inputs: targets from a Citizen Lab test-list CSV, a plain list, or one URL.

Malformed rows never stop a run: each one becomes an ``InputProblem`` naming its line,
and the good rows are probed.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clearwall.errors import InvalidName, ProbeError
from clearwall.policy.names import normalize_name

CITIZENLAB_HEADER: tuple[str, ...] = (
    "url",
    "category_code",
    "category_description",
    "date_added",
    "source",
    "notes",
)


@dataclass(frozen=True, slots=True)
class Target:
    """One URL to measure, with the canonical host name it resolves and its list metadata."""

    url: str
    name: str  # canonical host name, or the IP literal's canonical text
    scheme: str
    port: int
    path: str
    category_code: str = ""
    line: int | None = None

    @property
    def is_ip(self) -> bool:
        """True when the URL's host is an IP literal: there is no DNS step to measure."""
        try:
            ipaddress.ip_address(self.name)
        except ValueError:
            return False
        return True

    @property
    def is_https(self) -> bool:
        """True when the target is fetched over TLS."""
        return self.scheme == "https"


@dataclass(frozen=True, slots=True)
class InputProblem:
    """A row that could not be used, and why (``line`` is 1-based in the source file)."""

    line: int
    text: str
    reason: str


def parse_target(text: str, *, category_code: str = "", line: int | None = None) -> Target:
    """Parse a URL or a bare host name into a Target; raise ProbeError saying why not.

    A bare name (``example.com``) means ``http://example.com/``.
    """
    raw = text.strip()
    if not raw:
        raise ProbeError("empty target")
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port_value = parts.port
    except ValueError as exc:
        raise ProbeError(f"invalid URL {text.strip()!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ProbeError(f"unsupported URL scheme {scheme!r} in {text.strip()!r}")
    if not parts.hostname:
        raise ProbeError(f"URL without a host: {text.strip()!r}")
    try:
        name = str(ipaddress.ip_address(parts.hostname))
    except ValueError:
        try:
            name = normalize_name(parts.hostname)
        except InvalidName as exc:
            raise ProbeError(f"invalid host in {text.strip()!r}: {exc}") from exc
    port = port_value or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        url=raw,
        name=name,
        scheme=scheme,
        port=port,
        path=path,
        category_code=category_code,
        line=line,
    )


def parse_citizenlab_csv(text: str) -> tuple[list[Target], list[InputProblem]]:
    """Parse a Citizen Lab test-list CSV (header required) into targets and problems."""
    targets: list[Target] = []
    problems: list[InputProblem] = []
    reader = csv.reader(io.StringIO(text))
    header_seen = False
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if not header_seen:
            header = tuple(cell.strip().lower() for cell in row)
            if header[:1] != ("url",):
                raise ProbeError(
                    f"line {line}: not a Citizen Lab test list (first column must be 'url')"
                )
            header_seen = True
            continue
        if len(row) != len(CITIZENLAB_HEADER):
            problems.append(
                InputProblem(
                    line,
                    ",".join(row),
                    f"expected {len(CITIZENLAB_HEADER)} columns, found {len(row)}",
                )
            )
            continue
        try:
            targets.append(parse_target(row[0], category_code=row[1].strip(), line=line))
        except ProbeError as exc:
            problems.append(InputProblem(line, ",".join(row), str(exc)))
    if not header_seen:
        raise ProbeError("empty test list: no header row")
    return targets, problems


def parse_plain_list(text: str) -> tuple[list[Target], list[InputProblem]]:
    """Parse one name or URL per line; ``#`` starts a comment."""
    targets: list[Target] = []
    problems: list[InputProblem] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            targets.append(parse_target(item, line=number))
        except ProbeError as exc:
            problems.append(InputProblem(number, raw.strip(), str(exc)))
    return targets, problems


def looks_like_citizenlab(text: str) -> bool:
    """True when the first non-blank line is a Citizen Lab CSV header."""
    for raw in text.splitlines():
        if raw.strip():
            return raw.strip().lower().startswith("url,category_code")
    return False


def load_targets(path: Path) -> tuple[list[Target], list[InputProblem]]:
    """Read targets from a file, choosing the CSV or plain-list parser from its header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ProbeError(f"cannot read input {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProbeError(f"input {path} is not UTF-8 text: {exc}") from exc
    if looks_like_citizenlab(text):
        return parse_citizenlab_csv(text)
    return parse_plain_list(text)
