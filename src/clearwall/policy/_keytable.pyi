"""Type stubs of the key table (see _keytable.c): listed names as an open-addressing hash
table over their trie keys, searched in place in its image."""

from typing_extensions import Buffer

KEY_SIZE: int
"""Length in bytes of a hash key: 16."""

def build(keys: Buffer, key: Buffer, /) -> bytes:
    """The image of the newline-terminated ``keys`` (duplicates kept once, ids in the
    order keys are first seen), hashed with the 16-byte ``key``. ValueError when ``key``
    is not 16 bytes or ``keys`` does not end with a newline."""

class KeyTable:
    """The key table in ``image`` (kept exported, never copied). ValueError when
    ``image`` is not one (bad header or size); only the header is read."""

    def __init__(self, image: Buffer) -> None: ...
    def key_id(self, key: str, /) -> int:
        """The id of ``key``; KeyError when the table does not hold it."""

    def prefixes(self, key: str, /) -> list[str]:
        """The held keys that are prefixes of ``key`` (ending with one of its dots),
        shortest first: what ``marisa_trie.Trie.prefixes`` returns for trie keys."""

    def ids(self, keys: Buffer, /) -> list[int]:
        """The id of each newline-terminated key of ``keys`` (KeyError if one is not held)."""

    def keys(self) -> bytes:
        """The held keys in id order, each followed by a newline."""

    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
