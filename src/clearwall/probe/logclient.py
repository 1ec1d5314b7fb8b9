"""The probe's client of a clearwall log: fetch per-name proof bundles and verify them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

import httpx

from clearwall.errors import ClearwallError, ProbeError
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.cosignature import WitnessPolicy
from clearwall.ledger.signing import Verifier, parse_vkey
from clearwall.probe.reconcile import NameProof, name_proof_from_bundle


def load_vkey(text: str) -> Verifier:
    """Parse a C2SP verifier key given as text or as the path of a file holding it."""
    path = Path(text)
    try:
        value = path.read_text(encoding="utf-8").strip() if path.is_file() else text.strip()
        return parse_vkey(value)
    except (OSError, ClearwallError, ValueError) as exc:
        raise ProbeError(f"--key is not a verifier key: {exc}") from exc


class LogProofs:
    """Proofs from the log at ``base_url`` (``/log/`` endpoints), checked with ``verifier``.

    With a witness ``policy``, every checkpoint (the latest, and each bundle's) must also
    carry the quorum of valid witness cosignatures.
    """

    def __init__(
        self,
        base_url: str,
        verifier: Verifier,
        jurisdiction: str,
        *,
        timeout: float,
        policy: WitnessPolicy | None = None,
        witness_urls: Mapping[str, str] | None = None,
    ) -> None:
        """Nothing is fetched until ``check`` or ``prove``."""
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/log")] if base.endswith("/log") else base
        self.verifier = verifier
        self.jurisdiction = jurisdiction.lower()
        self.policy = policy
        self.witness_urls = dict(witness_urls or {})
        self.timeout = timeout
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)

    async def check(self) -> None:
        """Fetch and verify the latest checkpoint; raise ProbeError with the reason if not."""
        url = f"{self.base_url}/log/checkpoint"
        try:
            response = await self._client.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ProbeError(f"log {url} unreachable: {exc}") from exc
        try:
            open_checkpoint(response.text, self.verifier)
        except ClearwallError as exc:
            raise ProbeError(f"log checkpoint at {url} does not verify with --key: {exc}") from exc
        problem = await self._witnessed(response.text)
        if problem:
            raise ProbeError(f"log checkpoint at {url}: {problem}")

    async def _witnessed(self, note: str) -> str:
        """Why ``note`` lacks the witness quorum ("" when it has it, or without a policy)."""
        if self.policy is None:
            return ""
        try:
            report = self.policy.check(note, self.verifier, int(time.time()))
        except ClearwallError as exc:
            return str(exc)
        if report.ok:
            return ""
        conflicts: list[str] = []
        if self.witness_urls:
            from clearwall.ledger.remote import witness_conflicts

            conflicts = await asyncio.to_thread(
                witness_conflicts, note, self.verifier, report, self.witness_urls, self.timeout
            )
        return "; ".join([report.failure(), *conflicts])

    async def prove(self, name: str) -> NameProof:
        """The verified proof for ``name``; failures become an unverified NameProof."""
        url = f"{self.base_url}/log/proof/name/{quote(name)}"
        try:
            response = await self._client.get(url, params={"jurisdiction": self.jurisdiction})
            response.raise_for_status()
            bundle = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return NameProof(name, self.jurisdiction, False, failure=f"log: {exc}")
        if not isinstance(bundle, dict):
            return NameProof(name, self.jurisdiction, False, failure="log: bundle is not an object")
        problem = await self._witnessed(str(bundle.get("checkpoint", "")))
        if problem:
            return NameProof(name, self.jurisdiction, False, failure=f"log: {problem}")
        return name_proof_from_bundle(bundle, self.verifier, name, self.jurisdiction)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
