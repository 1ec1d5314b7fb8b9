"""The C LRU store (``clearwall.dnsserver._lrustore``) against an OrderedDict reference:
table-driven cases, a hypothesis state machine over every operation, type and length
checks, MemoryError leaving the store as it was, and the bytes it holds per entry."""

from __future__ import annotations

import gc
import tracemalloc
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from clearwall.dnsserver._lrustore import LRUStore

HEADER = 40  # bytes of a record before its key and value
MAX_KEY = 65535
MAX_VALUE = 1 << 20


class Reference:
    """The LRUStore contract on an OrderedDict, least recent first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def touch(self, key: bytes) -> bool:
        if key not in self.entries:
            return False
        self.entries.move_to_end(key)
        return True

    def put(self, key: bytes, value: bytes) -> int:
        self.entries[key] = value
        self.entries.move_to_end(key)
        evicted = 0
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
            evicted += 1
        return evicted

    def pop(self, key: bytes) -> bytes | None:
        return self.entries.pop(key, None)

    def clear(self) -> None:
        self.entries.clear()

    def keys(self) -> list[bytes]:
        return list(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return type(key) is bytes and key in self.entries


def run(store: LRUStore | Reference, ops: list[tuple[Any, ...]]) -> list[object]:
    """Each operation's result, ops being (method name, *args)."""
    return [getattr(store, name)(*args) for name, *args in ops]


def empty_nbytes() -> int:
    return LRUStore(1).nbytes


# (max_entries, operations, their results, keys afterwards, least recent first)
CASES = {
    "eviction order": (
        2,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("put", b"c", b"3"), ("get", b"a")],
        [0, 0, 1, None],
        [b"b", b"c"],
    ),
    "touch makes most recent": (
        2,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("touch", b"a"), ("put", b"c", b"3")],
        [0, 0, True, 1],
        [b"a", b"c"],
    ),
    "touch of an absent key": (
        2,
        [("put", b"a", b"1"), ("touch", b"z")],
        [0, False],
        [b"a"],
    ),
    "get keeps recency": (
        2,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("get", b"a"), ("put", b"c", b"3")],
        [0, 0, b"1", 1],
        [b"b", b"c"],
    ),
    "replace keeps one entry, as most recent": (
        2,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("put", b"a", b"33"), ("get", b"a")],
        [0, 0, 0, b"33"],
        [b"b", b"a"],
    ),
    "pop": (
        3,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("pop", b"a"), ("pop", b"a"), ("get", b"a")],
        [0, 0, b"1", None, None],
        [b"b"],
    ),
    "clear": (
        3,
        [("put", b"a", b"1"), ("put", b"b", b"2"), ("clear",), ("get", b"a"), ("put", b"c", b"")],
        [0, 0, None, None, 0],
        [b"c"],
    ),
    "empty key and empty value": (
        2,
        [("put", b"", b""), ("get", b""), ("put", b"x", b""), ("get", b"x"), ("pop", b"")],
        [0, b"", 0, b"", b""],
        [b"x"],
    ),
    "one entry": (
        1,
        [("put", b"a", b"1"), ("put", b"a", b"2"), ("put", b"b", b"3"), ("touch", b"a")],
        [0, 0, 1, False],
        [b"b"],
    ),
}


@pytest.mark.parametrize(("max_entries", "ops", "results", "keys"), CASES.values(), ids=CASES)
def test_operations(
    max_entries: int, ops: list[tuple[Any, ...]], results: list[object], keys: list[bytes]
) -> None:
    store = LRUStore(max_entries)
    reference = Reference(max_entries)
    assert run(store, ops) == results == run(reference, ops)
    assert store.keys() == keys == reference.keys()
    assert len(store) == len(keys)


class Key(bytes):
    """A bytes subclass: its hash and equality could run Python code, so it is refused."""


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("a"),
        lambda s: s.get(bytearray(b"a")),
        lambda s: s.get(Key(b"a")),
        lambda s: s.touch(memoryview(b"a")),
        lambda s: s.pop(1),
        lambda s: s.put("a", b"1"),
        lambda s: s.put(b"a", "1"),
        lambda s: s.put(b"a", bytearray(b"1")),
        lambda s: s.put(Key(b"a"), b"1"),
        lambda s: s.put(b"a", Key(b"1")),
        lambda s: s.put(b"a"),
        lambda s: s.put(b"a", b"1", b"2"),
    ],
)
def test_type_errors(call: Any) -> None:
    store = LRUStore(4)
    store.put(b"a", b"0")
    with pytest.raises(TypeError):
        call(store)
    assert store.keys() == [b"a"]
    assert store.get(b"a") == b"0"


@pytest.mark.parametrize("key", ["a", 1, None, bytearray(b"a"), Key(b"a"), memoryview(b"a")])
def test_contains_only_bytes(key: object) -> None:
    store = LRUStore(4)
    store.put(b"a", b"0")
    assert b"a" in store
    assert key not in store


@pytest.mark.parametrize(
    ("key", "value"),
    [(b"k" * (MAX_KEY + 1), b""), (b"k", b"v" * (MAX_VALUE + 1))],
    ids=["key", "value"],
)
def test_too_long(key: bytes, value: bytes) -> None:
    store = LRUStore(4)
    with pytest.raises(ValueError, match="longer than"):
        store.put(key, value)
    assert len(store) == 0
    assert store.get(key) is None
    assert key not in store


@pytest.mark.parametrize("max_entries", [0, -1])
def test_max_entries_at_least_one(max_entries: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LRUStore(max_entries)


def test_max_entries_read_only() -> None:
    store = LRUStore(max_entries=7)
    assert store.max_entries == 7
    with pytest.raises(AttributeError):
        store.max_entries = 8  # type: ignore[misc]


def test_longest_key_and_value() -> None:
    store = LRUStore(2)
    key, value = b"k" * MAX_KEY, bytes(range(256)) * (MAX_VALUE // 256)
    assert store.put(key, value) == 0
    assert store.get(key) == value
    assert store.nbytes == empty_nbytes() + HEADER + MAX_KEY + MAX_VALUE
    assert store.pop(key) == value
    assert store.nbytes == empty_nbytes()


def test_nbytes_grows_and_shrinks() -> None:
    store = LRUStore(100)
    empty = store.nbytes
    assert empty == empty_nbytes() > 0
    store.put(b"abc", b"12345")
    assert store.nbytes == empty + HEADER + 3 + 5
    store.put(b"abc", b"1")
    assert store.nbytes == empty + HEADER + 3 + 1
    store.pop(b"abc")
    assert store.nbytes == empty
    for i in range(100):
        store.put(b"%d" % i, b"v")
    grown = store.nbytes
    assert grown > empty + 100 * (HEADER + 2)
    store.put(b"new", b"v")  # evicts b"0": one byte less of key
    assert store.nbytes == grown + 2
    store.clear()
    assert store.nbytes == empty
    assert len(store) == 0


def test_many_keys_through_a_small_store() -> None:
    store = LRUStore(1000)
    evicted = sum(store.put(b"%d" % i, b"%d" % -i) for i in range(100_000))
    assert evicted == 99_000
    assert len(store) == 1000
    assert store.keys() == [b"%d" % i for i in range(99_000, 100_000)]
    assert store.get(b"99000") == b"-99000"
    assert store.get(b"98999") is None
    # Five-byte keys, six-byte values, and a table that never outgrows max_entries: 1024
    # buckets of 8 bytes.
    assert store.nbytes == 1000 * (HEADER + 5 + 6) + 1024 * 8


def test_bytes_per_entry() -> None:
    """The budget that motivates the module: <= 230 bytes for an answer-cache-sized entry,
    and nbytes is what the allocator was asked for (tracemalloc sees PyMem_Malloc)."""
    entries = 50_000
    keys = [b"%035d" % i for i in range(entries)]
    value = bytes(120)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = LRUStore(entries)
        for key in keys:
            store.put(key, value)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(store) == entries
    assert store.nbytes / entries <= 230
    assert 0 <= traced - store.nbytes < 1024


def test_dealloc_frees_everything() -> None:
    keys = [b"%d" % i for i in range(3000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = LRUStore(1000)
        for key in keys:
            store.put(key, key * 3)
        held = store.nbytes
        assert tracemalloc.get_traced_memory()[0] - before >= held > 50_000
        del store
        # What stays is the interpreter's own small change (frames, freelists), not records.
        assert tracemalloc.get_traced_memory()[0] - before < 1024
    finally:
        tracemalloc.stop()


def test_no_gc_tracking() -> None:
    assert not gc.is_tracked(LRUStore(1))


def test_memory_error_keeps_the_old_value() -> None:
    testcapi = pytest.importorskip("_testcapi")
    store = LRUStore(2)
    store.put(b"a", b"old")
    store.put(b"b", b"2")
    before = store.nbytes
    value = b"new" * 200
    for key in (b"a", b"c"):
        failed = False
        testcapi.set_nomemory(0)  # every allocation fails until remove_mem_hooks
        try:
            store.put(key, value)
        except MemoryError:
            failed = True
        finally:
            testcapi.remove_mem_hooks()
        assert failed
    assert store.keys() == [b"a", b"b"]
    assert store.get(b"a") == b"old"
    assert store.nbytes == before


KEYS = st.binary(max_size=2)  # few distinct keys, so that operations meet
VALUES = st.binary(max_size=40)


class StoreMachine(RuleBasedStateMachine):
    """Every operation on LRUStore gives what the OrderedDict reference gives."""

    store: LRUStore
    reference: Reference

    @initialize(max_entries=st.integers(min_value=1, max_value=8))
    def start(self, max_entries: int) -> None:
        self.store = LRUStore(max_entries)
        self.reference = Reference(max_entries)

    @rule(key=KEYS, value=VALUES)
    def put(self, key: bytes, value: bytes) -> None:
        assert self.store.put(key, value) == self.reference.put(key, value)

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.store.get(key) == self.reference.get(key)

    @rule(key=KEYS)
    def touch(self, key: bytes) -> None:
        assert self.store.touch(key) == self.reference.touch(key)

    @rule(key=KEYS)
    def pop(self, key: bytes) -> None:
        assert self.store.pop(key) == self.reference.pop(key)

    @rule(key=KEYS)
    def contains(self, key: bytes) -> None:
        assert (key in self.store) == (key in self.reference)

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.reference.clear()

    @invariant()
    def same_entries(self) -> None:
        if hasattr(self, "store"):
            assert len(self.store) == len(self.reference)
            assert self.store.keys() == self.reference.keys()
            table = self.store.nbytes - sum(
                HEADER + len(k) + len(v) for k, v in self.reference.entries.items()
            )
            assert table >= 8 * 8


TestStoreMachine = StoreMachine.TestCase
