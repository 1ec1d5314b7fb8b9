"""API tokens: generated, hashed, stored, looked up and revoked here and nowhere else.

A token is ``cw_`` and 256 random bits; only its SHA-256 is stored (a token that random
needs no salt or slow hash), so the secret exists once, in the answer to ``create``.
Tokens are not policy: they are written without a log entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, select, update

from clearwall.errors import NotFound, StoreError
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow
from clearwall.store.records import ApiToken, TokenRole
from clearwall.store.validate import parse_enum

MAX_SECRET = 200  # longer "tokens" are refused before they are hashed


def new_token() -> str:
    """A fresh API token secret: a recognisable prefix and 256 random bits."""
    return "cw_" + secrets.token_urlsafe(32)


def token_hash(secret: str) -> str:
    """The stored form of a token: hex SHA-256 of its secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """API tokens in the policy database (the CLI's ``tokens`` commands, the web app's
    authentication)."""

    def __init__(self, store: Store, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        """Work on ``store``; ``clock`` stamps creation and revocation."""
        self.store = store
        self.clock = clock

    def create(
        self, role: TokenRole | str, authority_id: int | None = None, label: str = ""
    ) -> tuple[str, ApiToken]:
        """Create a token; returns the secret (the only time it exists) and its record.

        An authority token names its authority (which must exist); other roles name none.
        """
        role_value: TokenRole = parse_enum(TokenRole, role, "token role")
        if (role_value is TokenRole.AUTHORITY) != (authority_id is not None):
            raise StoreError("an authority token needs --authority; other roles take none")
        secret = new_token()
        t = schema.api_tokens
        with self.store.write() as conn:
            if authority_id is not None:
                repo.get_authority(conn, authority_id)
            result = conn.execute(
                t.insert().values(
                    token_hash=token_hash(secret),
                    role=role_value.value,
                    authority_id=authority_id,
                    label=label,
                    created_at=self.clock(),
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            row = conn.execute(select(t).where(t.c.id == int(pk[0]))).one()
            return secret, repo.token_from_row(row)

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token whose secret is ``secret``, or None.

        The lookup is by hash (an index probe that reveals nothing about the secret), and
        the stored hash is compared again in constant time before it is trusted.
        """
        if not secret or len(secret) > MAX_SECRET:
            return None
        digest = token_hash(secret)
        row = self._active_row(schema.api_tokens.c.token_hash == digest)
        if row is None or not hmac.compare_digest(str(row.token_hash), digest):
            return None
        return repo.token_from_row(row)

    def active(self, token_id: int) -> ApiToken | None:
        """The token record ``token_id`` while it is not revoked, else None (the console's
        sessions re-check their token with this on every request)."""
        row = self._active_row(schema.api_tokens.c.id == token_id)
        return None if row is None else repo.token_from_row(row)

    def _active_row(self, which: ColumnElement[bool]) -> Row[Any] | None:
        """The unrevoked token row matching ``which`` (one check for both lookups)."""
        t = schema.api_tokens
        with self.store.read() as conn:
            return conn.execute(select(t).where(and_(which, t.c.revoked_at.is_(None)))).first()

    def list(self) -> list[ApiToken]:
        """Every token record, oldest first (secrets are not stored, so none is shown)."""
        t = schema.api_tokens
        with self.store.read() as conn:
            rows = conn.execute(select(t).order_by(t.c.id)).all()
        return [repo.token_from_row(r) for r in rows]

    def revoke(self, token_id: int) -> None:
        """Revoke a token; it stops authenticating at once. NotFound when there is no
        active token ``token_id``."""
        t = schema.api_tokens
        with self.store.write() as conn:
            result = conn.execute(
                update(t)
                .where(and_(t.c.id == token_id, t.c.revoked_at.is_(None)))
                .values(revoked_at=self.clock())
            )
            if result.rowcount == 0:
                raise NotFound(f"no active token {token_id}")
