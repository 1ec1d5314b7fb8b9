"""The policy commands end to end, as a user runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Run, make_runner


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One initialized SQLite store with the test jurisdictions and authorities, shared by
    the tests that must leave it unchanged (every one of them checks that it did)."""
    base = tmp_path_factory.mktemp("prepared")
    run = make_runner(base, f"sqlite:///{base / 'clearwall.db'}")
    run("init")
    setup_policy(run)
    return run


CHECK_KEYS = {"name", "jurisdiction", "decision", "action", "orders"}
ORDER_KEYS = {"id", "authority", "jurisdiction", "category", "legal_basis", "reference", "rule"}


def setup_policy(cli: Run) -> None:
    """Two jurisdictions and three authorities (ids 1, 2, 3)."""
    assert (
        cli(
            "jurisdictions",
            "add",
            "xa",
            "--name",
            "Demo Republic A",
            "--network",
            "127.0.0.0/8",
            "--network",
            "::1/128",
        ).stdout
        == "xa\n"
    )
    cli("jurisdictions", "add", "XB", "--name", "Demo Republic B", "--network", "127.77.0.0/16")
    ids = [
        cli(
            "authorities",
            "add",
            "--name",
            name,
            "--kind",
            kind,
            "--jurisdiction",
            j,
            "--contact",
            "mailto:x@example.org",
        ).stdout
        for name, kind, j in (
            ("Court A", "court", "xa"),
            ("Regulator B", "regulator", "xb"),
            ("Operator", "operator", "xa"),
        )
    ]
    assert ids == ["1\n", "2\n", "3\n"]


def add_order(
    cli: Run,
    rules: Path,
    *extra: str,
    authority: str = "1",
    ref: str = "R-1",
    ok: bool | None = True,
) -> object:
    """``orders add`` with fictional metadata."""
    return cli(
        "orders",
        "add",
        "--authority",
        authority,
        "--title",
        "Test order",
        "--legal-basis",
        "Fictional Act s. 2",
        "--reference",
        ref,
        "--category",
        "court-order",
        "--action",
        "nxdomain",
        "--rules",
        str(rules),
        *extra,
        ok=ok,
    )


def check(cli: Run, name: str, *where: str) -> dict[str, object]:
    """``check --json``, asserting the exact keys."""
    data = json.loads(cli("check", name, *where, "--json").stdout)
    assert set(data) == CHECK_KEYS
    for order in data["orders"]:
        assert set(order) == ORDER_KEYS
    return data


def test_end_to_end(cli: Run, tmp_path: Path) -> None:
    setup_policy(cli)
    rules = tmp_path / "court.txt"
    rules.write_text("||blocked.example^\n||bad label-.example^\n@@||ok.blocked.example^\n")
    proc = add_order(cli, rules)
    assert proc.stdout == "1\n"  # the id alone
    assert f"{rules}:2:" in proc.stderr  # the malformed line, as file:line
    blocked = check(cli, "www.blocked.example", "--client", "127.0.0.9")
    assert blocked == {
        "name": "www.blocked.example",
        "jurisdiction": "xa",
        "decision": "block",
        "action": "nxdomain",
        "orders": [
            {
                "id": 1,
                "authority": "Court A",
                "jurisdiction": "xa",
                "category": "court-order",
                "legal_basis": "Fictional Act s. 2",
                "reference": "R-1",
                "rule": "subtree blocked.example",
            }
        ],
    }
    assert check(cli, "blocked.example", "--client", "127.77.0.1")["decision"] == "allow"
    assert check(cli, "blocked.example", "--jurisdiction", "xb")["jurisdiction"] == "xb"
    exception = check(cli, "ok.blocked.example", "--jurisdiction", "xa")
    assert exception["decision"] == "allow" and exception["orders"]
    text = cli("check", "blocked.example", "--jurisdiction", "xa").stdout
    assert "BLOCKED" in text and "Court A" in text and "R-1" in text
    listed = cli("orders", "list").stdout.splitlines()
    assert listed[0].split("\t")[:3] == ["1", "active", "xa"]
    shown = cli("orders", "show", "1", "--rules").stdout
    assert "Fictional Act s. 2" in shown and "allow-subtree ok.blocked.example" in shown
    assert json.loads(cli("orders", "show", "1", "--json").stdout)["rule_count"] == 2
    assert "127.77.0.0/16" in cli("jurisdictions", "show", "xb").stdout
    assert "Regulator B" in cli("authorities", "show", "2").stdout
    assert [a["id"] for a in json.loads(cli("authorities", "list", "--json").stdout)] == [1, 2, 3]
    cli("orders", "revoke", "1", "--reason", "set aside on appeal")
    assert check(cli, "blocked.example", "--jurisdiction", "xa")["decision"] == "allow"
    assert "revoked" in cli("orders", "show", "1").stdout


def test_reimport_is_idempotent(cli: Run, tmp_path: Path) -> None:
    setup_policy(cli)
    rules = tmp_path / "list.txt"
    rules.write_text("a.example\nb.example\n")
    add_order(cli, rules)
    again = cli("orders", "amend", "1", "--rules", str(rules), "--reason", "refresh")
    assert again.stdout == "1\n" and "no change" in again.stderr
    add_order(cli, rules, ok=False)  # the same reference twice is refused, not duplicated
    more = tmp_path / "more.txt"
    more.write_text("a.example\nc.example\n")
    cli("orders", "amend", "1", "--rules", str(more), "--reason", "extension")
    assert json.loads(cli("orders", "show", "1", "--json").stdout)["rule_count"] == 3
    assert check(cli, "c.example", "--jurisdiction", "xa")["decision"] == "block"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("authorities", "add", "--name", "X", "--kind", "king", "--jurisdiction", "xa"),
            "invalid kind",
        ),
        (
            ("authorities", "add", "--name", "X", "--kind", "court", "--jurisdiction", "zz"),
            "no jurisdiction",
        ),
        (("jurisdictions", "add", "xa", "--name", "Again"), "already exists"),
        (
            ("jurisdictions", "add", "xc", "--name", "C", "--network", "10.0.0.1/8"),
            "invalid network",
        ),
        (("jurisdictions", "show", "zz"), "no jurisdiction"),
        (("orders", "show", "42"), "no order 42"),
        (("orders", "revoke", "42", "--reason", "x"), "no order 42"),
        (("check", "bad..name"), "empty label"),
        (("check", "a.example", "--client", "300.1.1.1"), "invalid client address"),
        (("check", "a.example", "--client", "127.0.0.1", "--jurisdiction", "xa"), "not both"),
        (("check", "a.example", "--jurisdiction", "zz"), "no jurisdiction"),
        (("export", "bind", "--jurisdiction", "xa"), "invalid export format"),
        (("orders", "list", "--status", "pending"), "invalid status"),
        (("orders", "list", "--db", "mysql://x/y"), "unsupported database"),
        (("config", "validate", "nonexistent.toml"), "not found"),
    ],
)
def test_bad_input_is_one_line(prepared: Run, args: tuple[str, ...], message: str) -> None:
    proc = prepared(*args, ok=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clearwall: error: "), proc.stderr
    assert message in lines[0]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"\x00\x01\x02binary\x00" * 100, (), "binary"),
        (b"", (), "no rules"),
        (b"<html><body>not a list</body></html>\n" * 20, ("--format", "hosts"), "hosts list"),
    ],
)
def test_non_list_writes_nothing(
    prepared: Run, tmp_path: Path, content: bytes, extra: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "junk.txt"
    path.write_bytes(content)
    proc = add_order(prepared, path, *extra, ok=False)
    assert "clearwall: error:" in proc.stderr and message in proc.stderr, proc.stderr
    assert json.loads(prepared("orders", "list", "--json").stdout) == []


def test_order_errors_write_nothing(prepared: Run, tmp_path: Path) -> None:
    cli = prepared
    rules = tmp_path / "list.txt"
    rules.write_text("a.example\n")
    for args in (
        ("--all-jurisdictions",),  # a court may not act for every jurisdiction
        ("--expires", "2020-01-01", "--effective-from", "2021-01-01"),
        ("--expires", "someday"),
    ):
        proc = add_order(cli, rules, *args, ok=False)
        assert proc.stderr.startswith("clearwall: error:"), proc.stderr
    add_order(cli, rules, authority="9", ok=False)
    add_order(cli, tmp_path / "missing.txt", ok=False)
    cli(
        "orders",
        "add",
        "--authority",
        "1",
        "--title",
        "t",
        "--legal-basis",
        "l",
        "--reference",
        "r",
        "--category",
        "gossip",
        "--action",
        "nxdomain",
        "--rules",
        str(rules),
        ok=False,
    )
    assert cli("orders", "list").stdout == ""


def test_uninitialized_store(tmp_path: Path, sqlite_url: str) -> None:
    run = make_runner(tmp_path, sqlite_url)
    proc = run("orders", "list", ok=False)
    assert "clearwall init" in proc.stderr and proc.stderr.count("\n") == 1


def test_demo_without_its_data_writes_nothing(tmp_path: Path) -> None:
    """`make run` inits only a missing store: a failed demo must not leave an empty one."""
    run = make_runner(tmp_path, f"sqlite:///{tmp_path / 'var' / 'clearwall.db'}")
    proc = run("init", "--demo", "--data", str(tmp_path / "missing"), ok=False)
    assert "clearwall: error: demo data directory not found" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_jurisdictions_update(sqlite_cli: Run) -> None:
    sqlite_cli("jurisdictions", "add", "xc", "--name", "C", "--network", "10.77.1.0/24")
    out = sqlite_cli(
        "jurisdictions", "update", "xc", "--add-network", "10.88.0.0/16", "--name", "Republic C"
    ).stdout
    assert out == "xc\tRepublic C\t10.77.1.0/24, 10.88.0.0/16\n"
    out = sqlite_cli("jurisdictions", "update", "xc", "--remove-network", "10.77.1.0/24").stdout
    assert out == "xc\tRepublic C\t10.88.0.0/16\n"
    bad = sqlite_cli("jurisdictions", "update", "xc", "--remove-network", "10.9.0.0/16", ok=False)
    assert bad.stderr == "clearwall: error: jurisdiction 'xc' has no network 10.9.0.0/16\n"
    verify = sqlite_cli("ledger", "verify")  # every change is on the log, as stored
    assert "0 orders and 1 jurisdictions match the log" in verify.stdout


def test_init_on_a_node_without_the_key_makes_no_key(tmp_path: Path, store_url: str) -> None:
    """A second gateway on the same store (docs/cluster.md): `init` there must not make a
    second signer."""
    signer = tmp_path / "signer"
    signer.mkdir()
    first = make_runner(signer, store_url)
    first("init")
    vkey = first("ledger", "key").stdout.strip()
    node = tmp_path / "node"
    node.mkdir()
    config = node / "cw.toml"
    config.write_text(f'[ledger]\nkey_file = "ledger.key"\ntiles_dir = "log"\nvkey = "{vkey}"\n')
    second = make_runner(node, store_url, env={"CLEARWALL_CONFIG": str(config)})
    done = second("init")
    assert f"no ledger key made: this node serves what [ledger] vkey {vkey} signs" in done.stderr
    assert not (node / "ledger.key").exists()
    second("ledger", "sync")
    # The signer's log: beside a SQLite store's file, else where its config names it.
    theirs = tmp_path / "clearwall-log" if store_url.startswith("sqlite") else signer / "log"
    assert (node / "log" / "checkpoint").read_bytes() == (theirs / "checkpoint").read_bytes()
