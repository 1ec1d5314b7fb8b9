"""Schemathesis over the admin API's OpenAPI schema: no 500s, responses match the schema.

Bounded in time: a few generated examples per operation, against one seeded SQLite store,
with an operator token (so writes really run) — the scoping of other roles is tested
exhaustively in ``test_scoping``.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from clearwall.web.app import create_app
from web.seeding import Seeded, bearer, seed

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """One seeded SQLite store for the whole module."""
    tmp = tmp_path_factory.mktemp("fuzz")
    return seed(f"sqlite:///{tmp / 'clearwall.db'}", tmp)


@pytest.fixture(scope="module")
def fuzz_app(fuzz_store: Seeded) -> FastAPI:
    """The app over that store."""
    return create_app(fuzz_store.config, fuzz_store.url)


@pytest.fixture(scope="module")
def api_schema(fuzz_app: FastAPI) -> Any:
    """The app's own OpenAPI schema, served over ASGI."""
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_app)


def test_api_conforms_to_its_schema(api_schema: Any, fuzz_store: Seeded) -> None:
    """Every operation, a bounded number of generated requests each, all checks on.

    (Driven by hypothesis directly: schemathesis' pytest plugin does not load under the
    pytest version in use.)
    """
    headers = bearer(fuzz_store.tokens["operator"])
    operations = [
        op
        for op in (result.ok() for result in api_schema.get_all_operations())
        if op.path.startswith("/api/v1/")  # /log/ belongs to the ledger and its tests
    ]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            # Schema-valid but semantically invalid input (a CIDR that is not one, list
            # text with no rule, an expiry before the start) is a documented 400; the
            # checks that matter here are: no 5xx, and every response matches the schema.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
