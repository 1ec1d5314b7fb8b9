"""Zones as zone files, written atomically: for resolvers that cannot transfer them (Knot
Resolver) and for ``clearwall export rpz``.

A file holds exactly what the primary would transfer for that serial (the same
records, TTL and SOA timers, in the same order), with the zone's notes as comments. It
is written to a temporary file in the same directory, flushed to disk, and renamed over
the old one, so a resolver watching it reads either the old zone or the new one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from clearwall.config import Config
from clearwall.formats.export import rpz_zone_text
from clearwall.xfr.feed import PolicyFeed
from clearwall.xfr.history import serial_of
from clearwall.xfr.zones import BASES, Basis, RuleIndex, Zone, jurisdiction_zones

log = logging.getLogger(__name__)

RETRY_MAX = 10.0  # seconds between attempts while the zones cannot be read or published


def zone_text(zone: Zone, tree_size: int, config: Config, combined: bool = False) -> str:
    """The zone file of ``zone`` at ``tree_size``, as ``config`` spells records
    (``combined``: the zone holds every basis' triggers)."""
    x = config.xfr
    block = config.dns.block
    what = "every basis" if combined else f"{zone.basis.value}, EDE {zone.basis.ede.value}"
    comments = [
        f"clearwall policy for jurisdiction {zone.jurisdiction} ({what}) at log size {tree_size}",
        *zone.notes,
    ]
    return rpz_zone_text(
        zone.name,
        ((owner, zone.policies[owner]) for owner in zone.owners()),
        serial_of(tree_size),
        x.ttl,
        comments,
        block.sinkhole_ipv4,
        block.sinkhole_ipv6,
        (x.refresh, x.retry, x.expire),
    )


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (after an fsync of the data)."""
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def file_name(zone: Zone) -> str:
    """The file a zone is written to in a directory: its name plus ``rpz``."""
    return f"{zone.name}rpz"


class ZoneFiles:
    """Computes one jurisdiction's zones from the store and writes them as files."""

    def __init__(
        self,
        feed: PolicyFeed,
        config: Config,
        jurisdiction: str,
        only: Basis | None = None,
        combined: str | None = None,
    ) -> None:
        """The zones of ``jurisdiction`` the primary serves (``only`` the one of that
        basis), or with ``combined`` one zone of that name holding every trigger."""
        self.feed = feed
        self.config = config
        self.jurisdiction = jurisdiction
        self.only = only
        self.combined = combined
        self.tree_size = -1
        self._written: dict[Path, str] = {}

    def texts(self) -> list[tuple[Zone, str]]:
        """The zones at the log's current size, with their zone file texts."""
        version = self.feed.read()
        index = RuleIndex(version.orders, self.config.dns.block.public_url)
        suffix = self.config.xfr.suffix
        if self.combined is not None:
            zones = jurisdiction_zones(
                index, self.jurisdiction, version.at, suffix, (Basis.CENSORED,), [self.combined]
            )
        else:
            zones = jurisdiction_zones(index, self.jurisdiction, version.at, suffix, BASES)
            zones = [z for z in zones if self.only is None or z.basis is self.only]
        self.tree_size = version.tree_size
        combined = self.combined is not None
        return [(zone, zone_text(zone, version.tree_size, self.config, combined)) for zone in zones]

    def write(self, paths: Callable[[Zone], Path]) -> list[Path]:
        """Write every zone whose text changed since the last write; the paths written."""
        written = []
        for zone, text in self.texts():
            path = paths(zone)
            if self._written.get(path) != text:
                write_atomically(path, text)
                self._written[path] = text
                written.append(path)
        return written

    def watch(
        self, paths: Callable[[Zone], Path], interval: float, stop: Callable[[], bool]
    ) -> None:
        """Write now, then again each time the log grows, until ``stop()`` is true."""
        for path in self.write(paths):
            log.info("%s written (log size %d)", path, self.tree_size)
        wait = interval
        while not stop():
            until = time.monotonic() + wait
            while not stop() and (left := until - time.monotonic()) > 0:
                time.sleep(min(left, interval))  # stop() is looked at every interval
            if stop():
                break
            try:
                if self.feed.size() != self.tree_size:
                    for path in self.write(paths):
                        log.info("%s written (log size %d)", path, self.tree_size)
                wait = interval
            except Exception as exc:  # keep the last good files; try again later
                log.error("zone files not updated: %s", exc)
                # A failure that persists (the log cannot be published, say) is retried
                # ever less often, not an error line every round.
                wait = min(max(wait * 2, interval), RETRY_MAX)
