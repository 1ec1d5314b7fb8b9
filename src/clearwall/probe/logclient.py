"""The probe's client of a clearwall log: fetch per-name proof bundles and verify them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx

from clearwall.errors import ClearwallError, ProbeError
from clearwall.ledger.checkpoint import open_checkpoint
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
    """Proofs from the log at ``base_url`` (``/log/`` endpoints), checked with ``verifier``."""

    def __init__(
        self, base_url: str, verifier: Verifier, jurisdiction: str, *, timeout: float
    ) -> None:
        """Nothing is fetched until ``check`` or ``prove``."""
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/log")] if base.endswith("/log") else base
        self.verifier = verifier
        self.jurisdiction = jurisdiction.lower()
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
        return name_proof_from_bundle(bundle, self.verifier, name, self.jurisdiction)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
