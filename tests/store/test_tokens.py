"""API tokens: shown once, stored as a hash, found by their secret until revoked."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from clearwall.errors import NotFound, StoreError
from clearwall.store import PolicyService, schema
from clearwall.store.records import TokenRole
from clearwall.store.tokens import TokenStore, token_hash

COURT = 1


def test_a_token_authenticates_until_it_is_revoked(service: PolicyService) -> None:
    tokens = TokenStore(service.store)
    secret, token = tokens.create(TokenRole.AUTHORITY, COURT, "court clerk")
    assert secret.startswith("cw_") and len(secret) > 40
    assert tokens.authenticate(secret) == token
    assert tokens.list() == [token]
    assert tokens.active(token.id) == token  # how the console re-checks a session
    tokens.revoke(token.id)
    assert tokens.authenticate(secret) is None
    assert tokens.active(token.id) is None
    assert tokens.active(token.id + 1) is None
    with pytest.raises(NotFound):
        tokens.revoke(token.id)


@pytest.mark.parametrize("secret", ["", "cw_x", "cw_" + "a" * 300])
def test_unknown_or_oversized_secrets_are_refused(service: PolicyService, secret: str) -> None:
    tokens = TokenStore(service.store)
    tokens.create(TokenRole.OPERATOR)
    assert tokens.authenticate(secret) is None


@pytest.mark.parametrize(
    ("role", "authority"),
    [(TokenRole.OPERATOR, COURT), (TokenRole.AUTHORITY, None), ("janitor", None)],
)
def test_a_token_names_an_authority_exactly_when_it_is_one(
    service: PolicyService, role: TokenRole | str, authority: int | None
) -> None:
    with pytest.raises(StoreError):
        TokenStore(service.store).create(role, authority)


def test_only_the_hash_is_stored(service: PolicyService) -> None:
    secret, _ = TokenStore(service.store).create(TokenRole.AUDITOR)
    with service.store.read() as conn:
        [stored] = conn.execute(select(schema.api_tokens.c.token_hash)).scalars()
    assert stored == token_hash(secret) and secret not in stored
