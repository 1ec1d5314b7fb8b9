"""The Atom feed (RFC 4287) of published, amended and revoked orders, built with ElementTree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from xml.etree import ElementTree as ET

ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One feed entry: a policy event about an order, with its log index as stable id."""

    log_index: int
    kind: str  # "order-published", "order-revoked", …
    title: str
    summary: str
    link: str
    updated: dt.datetime


def _stamp(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def atom_feed(
    items: Sequence[FeedItem], *, base_url: str, feed_url: str, title: str, origin: str
) -> bytes:
    """Serialize ``items`` (newest first) as an Atom document; text is escaped by ElementTree."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", f"tag:{origin},2024:feed")
    sub(feed, "title", title)
    sub(feed, "link", href=feed_url, rel="self", type="application/atom+xml")
    sub(feed, "link", href=base_url, rel="alternate", type="text/html")
    updated = items[0].updated if items else dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    sub(feed, "updated", _stamp(updated))
    author = sub(feed, "author")
    sub(author, "name", origin)
    for item in items:
        entry = sub(feed, "entry")
        sub(entry, "id", f"tag:{origin},2024:log/{item.log_index}")
        sub(entry, "title", item.title)
        sub(entry, "updated", _stamp(item.updated))
        sub(entry, "link", href=item.link, rel="alternate", type="text/html")
        sub(entry, "category", term=item.kind)
        sub(entry, "summary", item.summary)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        feed, encoding="unicode"
    ).encode("utf-8")
