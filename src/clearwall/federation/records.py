"""What the store keeps of each mirrored registry: its address and key, the jurisdiction
mapping, what was verified of its log, the last attempt and the evidence of refusals."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update

from clearwall.errors import Conflict, NotFound, StoreError
from clearwall.ledger.cosignature import WitnessPolicy, parse_cosigner_vkey
from clearwall.ledger.signing import Verifier, parse_vkey
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow
from clearwall.store.validate import normalize_code


@dataclass(frozen=True, slots=True)
class Mirror:
    """One registry this installation follows, and where following it stands."""

    id: int
    url: str
    vkey: str
    jurisdictions: Mapping[str, str]  # the registry's code -> the local code
    witnesses: tuple[str, ...]
    quorum: int
    origin: str | None
    size: int
    root: bytes | None  # the root of the tree verified last (None: nothing yet)
    checkpoint: str | None
    synced_at: dt.datetime | None
    status: str  # new | ok | unreachable | invalid | refused
    last_error: str
    attempted_at: dt.datetime | None
    failures: int

    def verifier(self) -> Verifier:
        """The registry's checkpoint verifier."""
        return parse_vkey(self.vkey)

    def policy(self) -> WitnessPolicy | None:
        """The witness quorum its checkpoints must carry (None: none asked)."""
        if not self.witnesses:
            return None
        return WitnessPolicy(tuple(parse_cosigner_vkey(w) for w in self.witnesses), self.quorum)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A refused checkpoint, kept: what was held, what the registry offered, and why."""

    id: int
    mirror_id: int
    at: dt.datetime
    kind: str
    detail: str
    held: str
    offered: str


def parse_mapping(codes: Sequence[str]) -> dict[str, str]:
    """``CODE`` or ``REMOTE=LOCAL`` items as a registry-code -> local-code mapping."""
    out: dict[str, str] = {}
    for item in codes:
        remote, _, local = item.partition("=")
        remote_code = normalize_code(remote)
        out[remote_code] = normalize_code(local) if local else remote_code
    if not out:
        raise StoreError("a mirror needs at least one --jurisdiction to adopt")
    return out


def _mirror(row: Row[Any]) -> Mirror:
    return Mirror(
        id=int(row.id),
        url=row.url,
        vkey=row.vkey,
        jurisdictions=json.loads(row.jurisdictions),
        witnesses=tuple(json.loads(row.witnesses)),
        quorum=int(row.quorum),
        origin=row.origin,
        size=int(row.size),
        root=None if row.root_hash is None else bytes(row.root_hash),
        checkpoint=row.checkpoint,
        synced_at=row.synced_at,
        status=row.status,
        last_error=row.last_error,
        attempted_at=row.attempted_at,
        failures=int(row.failures),
    )


def normalize_registry_url(url: str) -> str:
    """A registry's base URL without a trailing ``/`` or ``/log``; StoreError if not http(s)."""
    base = url.strip().rstrip("/")
    base = base[: -len("/log")] if base.endswith("/log") else base
    if not base.startswith(("http://", "https://")):
        raise StoreError(f"registry URL {url!r} is not an http(s):// URL")
    return base


def add(
    store: Store,
    url: str,
    vkey: str,
    jurisdictions: Mapping[str, str],
    witnesses: Sequence[str] = (),
    quorum: int | None = None,
) -> Mirror:
    """Record a registry to follow (nothing is fetched yet); StoreError on a bad key,
    URL, quorum or local jurisdiction, Conflict when the URL is followed already."""
    base = normalize_registry_url(url)
    verifier = parse_vkey(vkey.strip())
    need = len(witnesses) if quorum is None else quorum
    keys = tuple(w.strip() for w in witnesses)
    WitnessPolicy(tuple(parse_cosigner_vkey(w) for w in keys), need)  # checks the quorum
    m = schema.mirrors
    with store.write() as conn:
        for local in jurisdictions.values():
            repo.get_jurisdiction(conn, local)  # NotFound names it
        if conn.execute(select(m.c.id).where(m.c.url == base)).first() is not None:
            raise Conflict(f"{base} is mirrored already")
        result = conn.execute(
            m.insert().values(
                url=base,
                vkey=verifier.vkey,
                jurisdictions=json.dumps(dict(jurisdictions), sort_keys=True),
                witnesses=json.dumps(list(keys)),
                quorum=need,
                created_at=utcnow(),
                size=0,
                status="new",
                last_error="",
                failures=0,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return get(conn, int(pk[0]))


def get(conn: Connection, mirror_id: int) -> Mirror:
    """The mirror ``mirror_id``; NotFound when there is none."""
    row = conn.execute(select(schema.mirrors).where(schema.mirrors.c.id == mirror_id)).first()
    if row is None:
        raise NotFound(f"no mirror {mirror_id}")
    return _mirror(row)


def find(store: Store, which: str) -> Mirror:
    """A mirror by id or URL."""
    with store.read() as conn:
        if which.isdigit():
            return get(conn, int(which))
        base = normalize_registry_url(which)
        row = conn.execute(select(schema.mirrors).where(schema.mirrors.c.url == base)).first()
        if row is None:
            raise NotFound(f"no mirror of {base}")
        return _mirror(row)


def list_all(store: Store) -> list[Mirror]:
    """Every mirror, by id."""
    with store.read() as conn:
        rows = conn.execute(select(schema.mirrors).order_by(schema.mirrors.c.id))
        return [_mirror(r) for r in rows]


def leaves(store: Store, mirror_id: int) -> bytes:
    """The registry's leaf hashes verified so far, in index order, concatenated."""
    t = schema.mirror_leaves
    with store.read() as conn:
        rows = conn.execute(
            select(t.c.leaf_hash).where(t.c.mirror_id == mirror_id).order_by(t.c.idx)
        )
        return b"".join(bytes(r[0]) for r in rows)


def adopted(conn: Connection, mirror_id: int) -> dict[int, tuple[int, int]]:
    """The registry's order id -> (local order id, registry entry last followed)."""
    t = schema.mirror_orders
    rows = conn.execute(
        select(t.c.remote_id, t.c.order_id, t.c.remote_index).where(t.c.mirror_id == mirror_id)
    )
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


def source_of(store: Store, order_id: int) -> tuple[Mirror, int, int] | None:
    """The mirror an order was adopted from, the registry's order id and entry last
    followed; None for an order of this installation's own."""
    t = schema.mirror_orders
    with store.read() as conn:
        row = conn.execute(
            select(t.c.mirror_id, t.c.remote_id, t.c.remote_index).where(t.c.order_id == order_id)
        ).first()
        if row is None:
            return None
        return get(conn, int(row[0])), int(row[1]), int(row[2])


def record_ok(store: Store, mirror_id: int) -> None:
    """Record a pass that found the held tree signed again: nothing new, all well."""
    now = utcnow()
    m = schema.mirrors
    with store.write() as conn:
        conn.execute(
            update(m)
            .where(m.c.id == mirror_id)
            .values(status="ok", last_error="", attempted_at=now, synced_at=now)
        )


def record_failure(
    store: Store, mirror_id: int, status: str, why: str, held: str = "", offered: str = ""
) -> None:
    """Record a failed attempt (and, for a refusal, keep both checkpoints as evidence,
    once per pair); nothing else changes."""
    now = utcnow()
    m = schema.mirrors
    with store.write() as conn:
        conn.execute(
            update(m)
            .where(m.c.id == mirror_id)
            .values(status=status, last_error=why, attempted_at=now, failures=m.c.failures + 1)
        )
        t = schema.mirror_evidence
        kept = conn.execute(
            select(t.c.id).where(
                (t.c.mirror_id == mirror_id) & (t.c.held == held) & (t.c.offered == offered)
            )
        ).first()
        # The same contradiction met again each interval is one piece of evidence.
        if offered and kept is None:
            conn.execute(
                schema.mirror_evidence.insert().values(
                    mirror_id=mirror_id,
                    at=now,
                    kind=status,
                    detail=why,
                    held=held,
                    offered=offered,
                )
            )


def evidence(store: Store, mirror_id: int | None = None) -> list[Evidence]:
    """The refused checkpoints kept, oldest first (of one mirror, or of all)."""
    t = schema.mirror_evidence
    query = select(t).order_by(t.c.id)
    if mirror_id is not None:
        query = query.where(t.c.mirror_id == mirror_id)
    with store.read() as conn:
        return [
            Evidence(int(r.id), int(r.mirror_id), r.at, r.kind, r.detail, r.held, r.offered)
            for r in conn.execute(query)
        ]


def remove(store: Store, mirror_id: int) -> None:
    """Forget a mirror and what was seen of it (adopted orders stay until withdrawn)."""
    with store.write() as conn:
        get(conn, mirror_id)
        for t in (
            schema.mirror_leaves,
            schema.mirror_orders,
            schema.mirror_authorities,
            schema.mirror_evidence,
        ):
            conn.execute(delete(t).where(t.c.mirror_id == mirror_id))
        conn.execute(delete(schema.mirrors).where(schema.mirrors.c.id == mirror_id))
