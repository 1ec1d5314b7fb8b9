"""A compiled policy snapshot on disk: an atomic save and an mmap load of its files."""

from __future__ import annotations

import ipaddress
import json
import math
import mmap
import os
import shutil
import tempfile
from array import array
from pathlib import Path
from typing import Any

import marisa_trie

from clearwall.errors import SnapshotError
from clearwall.policy.compiler import (
    FORMAT_VERSION,
    GROUP_TYPECODES,
    MARISA,
    Names,
    OrderEntry,
    Tables,
    metadata,
    ref_from_json,
)
from clearwall.policy.keytable import KIND as KEYTABLE
from clearwall.policy.keytable import KeyTableNames
from clearwall.policy.model import Jurisdiction

TRIE_FILE = "names.marisa"
KEYTABLE_FILE = "names.keys"
GROUPS_FILE = "groups.bin"
INDEX_FILE = "names.fp32"
META_FILE = "meta.json"


def save(tables: Tables, path: Path, extra: dict[str, bytes] | None = None) -> None:
    """Write the snapshot as a directory at ``path``, atomically, with the ``extra``
    files (name -> content) beside its own.

    Files are written into a fresh hidden sibling directory and fsynced. A new
    ``path`` is that directory renamed into place. An existing snapshot at ``path``
    is replaced by turning ``path`` into a symlink to the new directory, swapped in
    with one rename; the directory it named before is removed (processes that mapped
    it keep their pages until they load the new one).
    """
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f".{path.name}.{tables.version}.", dir=parent))
    previous: Path | None = None
    try:
        _write(tables, target, extra or {})
        if not path.exists() and not path.is_symlink():
            os.rename(target, path)
            _fsync_dir(parent)
            return
        if path.is_symlink():
            previous = parent / os.readlink(path)
        else:
            # A plain directory cannot be swapped atomically: move it aside first.
            previous = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=parent))
            os.rename(path, previous / "snapshot")
        link = parent / f".{path.name}.link.{os.getpid()}"
        if link.is_symlink():
            link.unlink()
        os.symlink(target.name, link)
        os.replace(link, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if previous.resolve() != target.resolve():
        shutil.rmtree(previous, ignore_errors=True)


def _write(tables: Tables, directory: Path, extra: dict[str, bytes]) -> None:
    for name, content in extra.items():
        with open(directory / name, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
    meta = metadata(tables)
    names_file = directory / _names_file(meta["names"])
    tables.trie.save(str(names_file))
    meta["byteorder"] = _byteorder()
    with open(directory / GROUPS_FILE, "wb") as out:
        out.write(memoryview(tables.key_groups).cast("B"))
        out.flush()
        os.fsync(out.fileno())
    with open(directory / INDEX_FILE, "wb") as out:
        out.write(tables.index_image)
        out.flush()
        os.fsync(out.fileno())
    with open(directory / META_FILE, "w", encoding="utf-8") as out:
        json.dump(meta, out, separators=(",", ":"))
        out.flush()
        os.fsync(out.fileno())
    fd = os.open(names_file, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(directory)


def load_tables(path: Path) -> Tables:
    """Map a saved snapshot: the trie, the key-group array and the name index stay
    file-backed pages that every process loading the same files shares. Nothing is
    read per name: loading takes the same time for any policy size."""
    path = Path(path)
    try:
        with open(path / META_FILE, encoding="utf-8") as src:
            meta = json.load(src)
        if meta.get("format") != FORMAT_VERSION:
            raise SnapshotError(f"{path}: snapshot format {meta.get('format')!r} unsupported")
        if meta.get("byteorder") != _byteorder():
            raise SnapshotError(f"{path}: snapshot written on a machine of other byte order")
        kind = meta.get("names", MARISA)
        trie: Names = marisa_trie.Trie([])
        if meta["keys"] and kind == KEYTABLE:
            trie = KeyTableNames.mmap(path / KEYTABLE_FILE)
        elif meta["keys"]:
            trie = marisa_trie.Trie()
            trie.mmap(str(path / _names_file(kind)))
        keepalive: list[Any] = []
        typecode = GROUP_TYPECODES.get(meta.get("group_width", 0))
        if typecode is None:
            raise SnapshotError(f"{path}: key-group width {meta.get('group_width')!r} unknown")
        key_groups: Any = array(typecode)
        if meta["keys"]:
            with open(path / GROUPS_FILE, "rb") as src:
                mapped = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)
            keepalive.append(mapped)
            if len(mapped) % array(typecode).itemsize:
                raise SnapshotError(f"{path}: key-group array has a partial entry")
            key_groups = memoryview(mapped).cast(typecode)
            if len(key_groups) != meta["keys"] or len(trie) != meta["keys"]:
                raise SnapshotError(f"{path}: trie and key-group array disagree")
        with open(path / INDEX_FILE, "rb") as src:  # never empty: it has a header
            index_image = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)
        tables = Tables(
            trie=trie,
            key_groups=key_groups,
            groups=[tuple(g) for g in meta["groups"]],
            orders=[
                OrderEntry(
                    ref_from_json(o["ref"]),
                    float(o["start"]),
                    math.inf if o["end"] is None else float(o["end"]),
                )
                for o in meta["orders"]
            ],
            jurisdictions=_jurisdictions(meta),
            ip_rules=[(str(cidr), int(code)) for cidr, code in meta["ip_rules"]],
            tree_size=int(meta["tree_size"]),
            base_url=str(meta["base_url"]),
            compiled_at=float(meta["compiled_at"]),
            valid_until=meta["valid_until"],
            version=str(meta["version"]),
            index_image=index_image,
            index_key=bytes.fromhex(meta["index_key"]),
            keepalive=keepalive,
        )
        return tables
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"cannot load policy snapshot {path}: {exc}") from exc


def _names_file(kind: str) -> str:
    """The file a snapshot keeps its names in, by the metadata's ``names`` value."""
    if kind == KEYTABLE:
        return KEYTABLE_FILE
    if kind == MARISA:
        return TRIE_FILE
    raise SnapshotError(f"names kept as {kind!r}: unknown to this version")


def saved_meta(path: Path) -> dict[str, Any]:
    """The metadata of the snapshot saved at ``path`` (version, tree size, ...), read
    without loading the snapshot; SnapshotError when it cannot be read."""
    try:
        with open(Path(path) / META_FILE, encoding="utf-8") as src:
            meta = json.load(src)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read the snapshot metadata in {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise SnapshotError(f"{path}: snapshot metadata is not an object")
    return meta


def _jurisdictions(meta: dict[str, Any]) -> list[Jurisdiction]:
    return [
        Jurisdiction(j["code"], j["name"], tuple(ipaddress.ip_network(n) for n in j["networks"]))
        for j in meta["jurisdictions"]
    ]


def saved_jurisdictions(path: Path) -> list[Jurisdiction]:
    """The jurisdictions the snapshot saved at ``path`` was compiled with, read without
    loading the snapshot; SnapshotError when they cannot be read."""
    try:
        return _jurisdictions(saved_meta(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path}: no jurisdictions in the snapshot metadata: {exc}") from exc


def _byteorder() -> str:
    import sys

    return f"{sys.byteorder}-{array('I').itemsize}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
