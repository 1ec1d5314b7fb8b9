"""A snapshot's listed names in a key table (``_keytable``) behind the interface of the
marisa trie the snapshot otherwise keeps them in.

A whole compile the gateway waits for (a first start, a change no overlay could carry)
builds its names as a key table, about a tenth of the time of the trie, at the price of
about eight times its size; the policy source then compiles the same policy with the
trie in the background and swaps it in (``control.policy_source``), so the table is what
a gateway serves from for the seconds that takes. ``tests/policy/test_keytable.py``
holds every answer to those of the trie.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clearwall.policy import _keytable

KIND = "keytable"
"""The snapshot metadata's ``names`` value for names kept in a key table."""


class KeyTableNames:
    """Listed names (trie keys: names reversed after a dot) in a key table, with the
    methods of ``marisa_trie.Trie`` a snapshot uses."""

    __slots__ = ("_keepalive", "_table", "image", "key_id", "prefixes")

    def __init__(self, image: Any, keepalive: Any = None) -> None:
        """Serve from ``image`` (bytes, or an mmap that ``keepalive`` keeps open)."""
        self._table = _keytable.KeyTable(image)
        self._keepalive = keepalive
        self.image = image
        self.prefixes = self._table.prefixes
        self.key_id = self._table.key_id

    @classmethod
    def build(cls, keys: bytes | bytearray) -> KeyTableNames:
        """The table of the newline-terminated ``keys``, under a fresh random hash key
        (a hostile list cannot pick names that collide)."""
        return cls(_keytable.build(keys, os.urandom(_keytable.KEY_SIZE)))

    @classmethod
    def mmap(cls, path: Path) -> KeyTableNames:
        """The table saved at ``path``, mapped: its pages stay shared between processes."""
        with open(path, "rb") as src:
            mapped = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)
        return cls(mapped, mapped)

    def ids(self, keys: bytes | bytearray) -> list[int]:
        """The id of each newline-terminated key of ``keys`` (KeyError if one is not held)."""
        return self._table.ids(keys)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def iteritems(self) -> Iterator[tuple[str, int]]:
        """(key, id) of every key, in key order (the same order for every compile)."""
        keys = self._table.keys().decode().split("\n")
        keys.pop()  # after the last newline
        for kid in sorted(range(len(keys)), key=keys.__getitem__):
            yield keys[kid], kid

    def tobytes(self) -> bytes:
        """The keys in id order, newline-terminated: what a content hash covers (the
        slots depend on the random hash key; the keys and their ids do not)."""
        return self._table.keys()

    def save(self, path: str) -> None:
        """Write the image to ``path`` (flushed to disk)."""
        with open(path, "wb") as out:
            out.write(self.image)
            out.flush()
            os.fsync(out.fileno())
