"""Validators of what a policy write is given: codes, networks, dates, rules, enums.

Each raises StoreError (or InvalidName) naming the bad value; the write path runs them
before it takes the write lock, and the CLI runs ``check_dates`` before it reads a list.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from clearwall.errors import InvalidName, StoreError
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store.db import utcnow

_CODE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
_CHEAP_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?$")
CONTACT_SCHEMES = ("mailto:", "tel:", "https://", "http://")


def parse_networks(
    networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[str]:
    """Client networks in canonical text, de-duplicated in order; StoreError names a bad
    one (host bits set included: ``10.0.0.1/8`` is refused, not silently widened)."""
    cidrs: list[str] = []
    for net in networks:
        try:
            parsed = ipaddress.ip_network(str(net).strip(), strict=True)
        except ValueError as exc:
            raise StoreError(f"invalid network {str(net)!r}: {exc}") from exc
        if str(parsed) not in cidrs:
            cidrs.append(str(parsed))
    return cidrs


def normalize_code(code: str) -> str:
    """Validate a jurisdiction code (ISO 3166-1 alpha-2 or an operator code such as ``corp``)."""
    text = code.strip().lower()
    if not _CODE.match(text):
        raise StoreError(
            f"invalid jurisdiction code {code!r}: 2-32 characters, a letter then letters, "
            "digits or '-'"
        )
    return text


def as_utc(value: dt.date | dt.datetime | str | None, what: str) -> dt.datetime | None:
    """Parse a date or datetime (ISO text accepted) into an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise StoreError(
                f"invalid {what} {value!r}: use YYYY-MM-DD[THH:MM[:SS][+HH:MM]]"
            ) from exc
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def as_date(value: dt.date | dt.datetime | str | None, default: dt.date) -> dt.date:
    """An issued date (ISO text accepted); ``default`` when none is given."""
    if value is None:
        return default
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise StoreError(f"invalid issued date {value!r}: use YYYY-MM-DD") from exc


def check_dates(
    issued: dt.date | str | None,
    effective_from: dt.date | dt.datetime | str | None,
    expires: dt.date | dt.datetime | str | None,
) -> None:
    """Raise StoreError unless the dates parse and the order expires after it takes effect."""
    start = as_utc(effective_from, "effective-from date") or utcnow()
    end = as_utc(expires, "expiry date")
    as_date(issued, start.date())
    if end is not None and end <= start:
        raise StoreError(f"order expires ({end.isoformat()}) before it takes effect")


def parse_enum(cls: Any, value: Any, what: str) -> Any:
    """``cls(value)``, or StoreError naming ``what`` and the values it may take."""
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(m.value for m in cls)
        raise StoreError(f"invalid {what} {value!r}: one of {choices}") from None


_IP_KINDS = frozenset(k for k in RuleKind if k.is_ip)


def check_rule(rule: RuleSpec) -> None:
    """Reject a rule whose value is not canonical (formats normalize; this is the backstop)."""
    if rule.kind in _IP_KINDS:
        try:
            net = ipaddress.ip_network(rule.value)
        except ValueError as exc:
            raise StoreError(f"invalid response-IP rule value {rule.value!r}") from exc
        if str(net) != rule.value:
            raise StoreError(f"response-IP rule {rule.value!r} is not canonical ({net})")
    elif len(rule.value) > 253 or not _CHEAP_NAME.match(rule.value) or ".." in rule.value:
        raise InvalidName(f"rule value {rule.value!r} is not a canonical domain name")


def unique_rules(rules: Iterable[RuleSpec]) -> list[RuleSpec]:
    """Rules de-duplicated by (kind, value), first occurrence kept, each value checked.

    This runs once per rule of every import, so the common case (a name) is checked
    inline with one regular-expression match.
    """
    seen: set[tuple[RuleKind, str]] = set()
    out: list[RuleSpec] = []
    match = _CHEAP_NAME.match
    for rule in rules:
        key = (rule.kind, rule.value)
        if key in seen:
            continue
        value = rule.value
        if rule.kind in _IP_KINDS or len(value) > 253 or match(value) is None or ".." in value:
            check_rule(rule)
        seen.add(key)
        out.append(rule)
    return out
