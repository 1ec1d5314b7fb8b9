"""Type stubs of the C Merkle Tree Hash over OpenSSL's SHA-256 (see _merkle.c)."""

from collections.abc import Sequence

def merkle_root(entries: Sequence[bytes], /) -> bytes: ...
