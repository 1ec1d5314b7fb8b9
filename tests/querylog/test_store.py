"""The query log's pure parts and its disk store: truncation, rotation, pruning, filters."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from clearwall.config import LoggingConfig
from clearwall.errors import ConfigError
from clearwall.querylog import Filters, QueryLogReader, SegmentStore, truncate
from clearwall.querylog.record import decode_orders, encode_orders
from clearwall.querylog.store import Row, prune, segments


@pytest.mark.parametrize(
    ("host", "v4", "v6", "prefix"),
    [
        ("192.0.2.77", 24, 48, "192.0.2.0/24"),
        ("192.0.2.77", 16, 48, "192.0.0.0/16"),
        ("192.0.2.77", 0, 48, "0.0.0.0/0"),
        ("2001:db8:1234:5678::1", 24, 48, "2001:db8:1234::/48"),
        ("2001:db8:1234:5678::1", 24, 56, "2001:db8:1234:5600::/56"),
        ("fe80::1%eth0", 24, 48, "fe80::/48"),
        ("::ffff:198.51.100.9", 24, 48, "198.51.100.0/24"),
        ("not-an-address", 24, 48, "unknown"),
    ],
)
def test_truncate(host: str, v4: int, v6: int, prefix: str) -> None:
    assert truncate(host, v4, v6) == prefix


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("client_prefix_v4", 25),
        ("client_prefix_v4", 32),
        ("client_prefix_v6", 64),
        ("client_prefix_v6", 128),
        ("client_prefix_v4", -1),
        ("query_log_max_mb", 0),
        ("query_log_max_days", 0.0),
        ("query_log_queue", 0),
    ],
)
def test_config_refuses_prefixes_that_identify_clients(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"\[logging\] {option}"):
        LoggingConfig(**{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("orders", [(), (1,), (12, 3, 120)])
def test_orders_round_trip(orders: tuple[int, ...]) -> None:
    assert decode_orders(encode_orders(orders)) == orders


def _row(t: float, name: str, decision: str = "allow", orders: str = "", j: str = "aa") -> Row:
    return (t, "192.0.2.0/24", j, name, 1, decision, orders, 0, 0.1, "udp", 1, 0.2)


def test_rotates_by_size_and_prunes_by_size(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, "w0", max_bytes=2 * 1024 * 1024, max_age=86400)
    assert store.segment_bytes == 104857  # a twentieth of the limit
    now = time.time()
    for i in range(40):
        store.append([_row(now, f"n{i}-{j}.example" * 4) for j in range(1500)], now + i)
    store.close()
    found = segments(tmp_path)
    assert len(found) > 2, "never rotated"
    assert sum(s.size for s in found) <= 2 * 1024 * 1024
    assert QueryLogReader(tmp_path).count(Filters()) < 40 * 1500  # the oldest went


def test_prunes_by_age(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, "w0", max_bytes=1 << 30, max_age=3600)
    now = time.time()
    store.append([_row(now - 7200, "old.example")], now - 7200)
    store.close()
    old = segments(tmp_path)[0]
    os.utime(old.path, (now - 7200, now - 7200))
    store.append([_row(now, "new.example")], now)
    store.close()
    assert prune(tmp_path, 1 << 30, 3600, now) == 0  # the new store already pruned it
    assert [e.qname for e in QueryLogReader(tmp_path).search(Filters())] == ["new.example"]


def test_reader_filters(tmp_path: Path) -> None:
    store = SegmentStore(tmp_path, "w0", max_bytes=1 << 30, max_age=86400)
    now = time.time()
    store.append(
        [
            _row(now - 30, "a.example"),
            _row(now - 20, "x.bad.example", "block", ",4,", "aa"),
            _row(now - 10, "bad.example", "block", ",4,5,", "bb"),
            _row(now - 5, "notbad.example", "allow"),
            _row(now - 1, "y_z.example", "allow"),
        ],
        now,
    )
    store.close()
    other = SegmentStore(tmp_path, "w1", max_bytes=1 << 30, max_age=86400)
    other.append([_row(now - 2, "w1.bad.example", "block", ",5,", "aa")], now)
    other.close()
    r = QueryLogReader(tmp_path)

    def names(f: Filters) -> list[str]:
        return [e.qname for e in r.search(f, limit=100)]

    assert names(Filters(name="bad.example")) == ["w1.bad.example", "bad.example", "x.bad.example"]
    assert names(Filters(decision="block", order=4)) == ["bad.example", "x.bad.example"]
    assert names(Filters(jurisdiction="bb")) == ["bad.example"]
    assert names(Filters(since=now - 6)) == ["y_z.example", "w1.bad.example", "notbad.example"]
    assert names(Filters(name="y%z.example")) == []  # LIKE wildcards are literal
    assert [e.qname for e in r.search(Filters(), limit=2, offset=1)] == [
        "w1.bad.example",
        "notbad.example",
    ]
    assert r.tally(Filters(), "decision") == {"allow": 3, "block": 3}
    assert r.top_blocked(Filters()) == [
        (4, [("bad.example", 1), ("x.bad.example", 1)]),
        (5, [("bad.example", 1), ("w1.bad.example", 1)]),
    ]
    assert [e.to_json()["orders"] for e in r.export(Filters(order=5))] == [[4, 5], [5]]


def test_the_documented_config_loads(tmp_path: Path) -> None:
    import re

    from clearwall.config import load_config

    doc = (Path(__file__).resolve().parents[2] / "docs" / "querylog.md").read_text()
    block = re.search(r"```toml\n(.*?)```", doc, re.S)
    assert block
    (tmp_path / "c.toml").write_text(block.group(1))
    logging = load_config(tmp_path / "c.toml").logging
    assert logging.query_log and logging.client_prefix_v4 == 24


def test_the_writer_merges_groups_that_decode_to_one_record() -> None:
    import dns.message

    from clearwall.querylog.writer import Decoder

    plain = dns.message.make_query("a.example", "A", use_edns=None).to_wire()[2:]
    with_opt = dns.message.make_query("a.example", "A", use_edns=0).to_wire()[2:]
    other = dns.message.make_query("b.example", "AAAA").to_wire()[2:]
    groups = [  # (second, count, latency sum, max, client, jurisdiction, query, ...)
        (100, 3, 0.003, 0.002, "192.0.2.0/24", "aa", plain, "block", 3, (4,), False),
        (100, 2, 0.004, 0.003, "192.0.2.0/24", "aa", with_opt, "block", 3, (4,), False),
        (100, 1, 0.001, 0.001, "192.0.2.0/24", "aa", other, "allow", 0, (), False),
        (101, 1, 0.001, 0.001, "192.0.2.0/24", "aa", plain, "block", 3, (4,), False),
    ]
    rows = Decoder().rows(1000.0, 100.5, groups)  # type: ignore[arg-type]
    by = {(r[0], r[3], r[4]): r for r in rows}
    assert len(rows) == 3
    merged = by[(999.0, "a.example", 1)]
    assert (merged[10], round(merged[8], 3), round(merged[11], 3)) == (5, 1.4, 3.0)
    assert by[(999.0, "b.example", 28)][10] == 1
    assert by[(1000.0, "a.example", 1)][10] == 1
