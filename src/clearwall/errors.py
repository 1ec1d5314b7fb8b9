"""The one exception hierarchy of clearwall; every error a user can meet derives from it.

    ClearwallError
     ├── ConfigError            a config file or option is invalid (names the option)
     ├── InvalidName            a domain name cannot be normalized
     ├── FormatError            a list file is not a list at all (whole import fails)
     ├── StoreError             the database refused or lost a write
     │    ├── NotFound          an id or code does not exist
     │    ├── Conflict          a unique thing already exists / a state change is illegal
     │    └── ScopeError        an authority acted outside its jurisdiction
     ├── LedgerError            the log is inconsistent
     │    ├── VerificationError a proof, signature or recomputed hash does not match
     │    ├── TileError         a tile or entry bundle is corrupt or truncated
     │    ├── WitnessRefusal    a witness refuses a checkpoint (carries the HTTP status)
     │    └── MirrorError       a registry's log cannot be followed (unreachable,
     │                          invalid, or refused as forked or rewritten)
     ├── SnapshotError          a compiled policy snapshot cannot be built or loaded
     ├── DNSWireError           a DNS message cannot be parsed (server answers FORMERR)
     ├── UpstreamError          no upstream gave a usable answer
     └── ProbeError             a probe input or measurement setup is unusable

Causes are chained with ``raise ... from ...``; the CLI prints ``str(error)`` on one line.
"""

from __future__ import annotations


class ClearwallError(Exception):
    """Base of every error clearwall raises on purpose."""


class ConfigError(ClearwallError):
    """A config file or option is invalid; the message names the component and option."""


class InvalidName(ClearwallError):
    """A domain name cannot be normalized (bad label, too long, invalid IDNA)."""


class FormatError(ClearwallError):
    """A file is not a blocklist in any supported format; nothing is imported."""


class StoreError(ClearwallError):
    """The policy store refused a write or could not be read."""


class NotFound(StoreError):
    """An id or code names nothing in the store."""


class Conflict(StoreError):
    """A unique thing already exists, or a state change is not allowed."""


class ScopeError(StoreError):
    """An authority tried to act on another jurisdiction's policy."""


class LedgerError(ClearwallError):
    """The transparency log is inconsistent or cannot be written."""


class VerificationError(LedgerError):
    """A proof, signature or recomputed hash does not match."""


class TileError(LedgerError):
    """A tile or entry bundle is corrupt, truncated or of the wrong size."""


class WitnessRefusal(LedgerError):
    """A witness refuses to cosign; ``status`` is the C2SP tlog-witness HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        """A refusal with HTTP ``status`` (400, 403, 404, 409, 422) and a reason."""
        super().__init__(message)
        self.status = status


class SnapshotError(ClearwallError):
    """A compiled policy snapshot cannot be built, saved or loaded."""


class DNSWireError(ClearwallError):
    """A DNS message is malformed; the server answers FORMERR or drops it."""


class UpstreamError(ClearwallError):
    """No upstream resolver gave a usable answer in time."""


class ProbeError(ClearwallError):
    """A probe input, control or log is unusable."""


class MirrorError(LedgerError):
    """A registry's log cannot be followed now; ``status`` says how it failed:
    ``unreachable`` (no answer), ``invalid`` (garbage, a bad signature, entries that do
    not hash to the signed root) or ``refused`` (a signed checkpoint inconsistent with
    one verified before: the registry forked or rewrote its log; evidence is kept)."""

    def __init__(self, status: str, message: str, offered: str = "") -> None:
        """``offered`` is the signed checkpoint that contradicts the held one, if any."""
        super().__init__(message)
        self.status = status
        self.offered = offered
