"""The API token repository: create (shown once), look up by hash, list and revoke tokens."""

from __future__ import annotations

from sqlalchemy import select

from clearwall.store import schema
from clearwall.store.records import ApiToken, TokenRole
from clearwall.store.repositories import token_from_row
from clearwall.store.service import PolicyService
from clearwall.web.security import constant_time_equal, hash_token

Role = TokenRole
"""What a token may do: ``operator`` everything, ``authority`` its own jurisdiction's
orders, ``auditor`` read everything (including non-public fields) and write nothing."""

TokenInfo = ApiToken
"""A stored token without its secret (the store's record value)."""


class TokenStore:
    """API tokens in the policy database; only their SHA-256 is ever stored.

    Creation and revocation go through ``PolicyService``; authentication re-checks the
    stored hash in constant time before a token is trusted.
    """

    def __init__(self, service: PolicyService) -> None:
        """Work on the service's store."""
        self.service = service

    def create(
        self, role: Role | str, authority_id: int | None = None, label: str = ""
    ) -> tuple[str, TokenInfo]:
        """Create a token; returns the secret (the only time it exists) and its record."""
        info, secret = self.service.create_token(role, authority_id, label)
        return secret, info

    def authenticate(self, secret: str) -> TokenInfo | None:
        """The active token whose secret is ``secret``, or None.

        The lookup is by hash (an index probe that reveals nothing about the secret), and
        the stored hash is compared again in constant time before it is trusted.
        """
        if not secret or len(secret) > 200:
            return None
        digest = hash_token(secret)
        t = schema.api_tokens
        with self.service.store.read() as conn:
            row = conn.execute(select(t).where(t.c.token_hash == digest)).first()
        if row is None or not constant_time_equal(row.token_hash, digest):
            return None
        info = token_from_row(row)
        return info if info.revoked_at is None else None

    def list(self) -> list[TokenInfo]:
        """Every token record, oldest first (secrets are not stored, so none is shown)."""
        t = schema.api_tokens
        with self.service.store.read() as conn:
            rows = conn.execute(select(t).order_by(t.c.id)).all()
        return [token_from_row(r) for r in rows]

    def revoke(self, token_id: int) -> None:
        """Revoke a token; it stops working at once."""
        self.service.revoke_token(token_id)
