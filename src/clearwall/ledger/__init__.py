"""The public, append-only Merkle log of every policy change (RFC 6962 hashing, C2SP formats)."""
