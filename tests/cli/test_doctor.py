"""``clearwall doctor`` on a real deployment, and on one broken in each way it checks.

Each case sets up a store with ``clearwall init`` and one published change, breaks one
thing, and expects doctor to fail that check (only that, plus what depends on it), print
the fix, and exit with status 1.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import http.server
import json
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clearwall.ledger.signing import create_key_file
from dnsserver.upstreams import NSD, free_port, nsd_available


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NSD]:
    """A real nsd: the deployment's upstream."""
    if not nsd_available():
        pytest.fail("nsd is not installed: run scripts/install-system-deps.sh as root")
    server = NSD(tmp_path_factory.mktemp("nsd"))
    server.start()
    yield server
    server.stop()


class Site:
    """A deployment in a directory: its config values, and doctor run against it."""

    def __init__(self, root: Path, upstream: int) -> None:
        self.root = root
        self.values = {
            "db": root / "cw.db",
            "key": root / "ledger.key",
            "tiles": root / "log",
            "dns": free_port(),
            "web": free_port(),
            "upstream": upstream,
            "logging": "",
        }

    def write(self) -> Path:
        v = self.values
        path = self.root / "clearwall.toml"
        path.write_text(
            f'[store]\nurl = "sqlite:///{v["db"]}"\n'
            f'[ledger]\nkey_file = "{v["key"]}"\ntiles_dir = "{v["tiles"]}"\n'
            + (f'vkey = "{v["vkey"]}"\n' if v.get("vkey") else "")
            + f'[dns]\nlisten = ["127.0.0.1:{v["dns"]}"]\n'
            f'[dns.upstream]\nservers = ["127.0.0.1:{v["upstream"]}"]\ntimeout = 0.5\n'
            f'[web]\nlisten = "127.0.0.1:{v["web"]}"\n'
            f"[logging]\n{v['logging']}\n"
        )
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "clearwall", *args, "--config", str(self.write())],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def doctor(self, *args: str) -> tuple[int, list[dict[str, str]], str]:
        done = self.cli("doctor", "--json", *args)
        return done.returncode, [json.loads(x) for x in done.stdout.splitlines()], done.stderr


@pytest.fixture
def site(tmp_path: Path, nsd: NSD) -> Site:
    """An initialized deployment with one published change (so a signed checkpoint)."""
    s = Site(tmp_path, nsd.port)
    assert s.cli("init").returncode == 0
    done = s.cli("jurisdictions", "add", "xa", "--name", "Exampleland", "--network", "10.9.0.0/16")
    assert done.returncode == 0, done.stderr
    done = s.cli("authorities", "add", "--name", "Court", "--kind", "court", "--jurisdiction", "xa")
    assert done.returncode == 0, done.stderr
    (tmp_path / "list.txt").write_text("blocked.example\n")
    done = s.cli(
        *("orders", "add", "--authority", "1", "--title", "T", "--legal-basis", "Act s.1"),
        *("--reference", "R-1", "--category", "court-order", "--action", "nxdomain"),
        *("--rules", str(tmp_path / "list.txt")),
    )
    assert done.returncode == 0, done.stderr
    return s


def test_a_healthy_deployment_passes(site: Site) -> None:
    rc, found, err = site.doctor()
    assert rc == 0, (found, err)
    assert {f["check"] for f in found} >= {
        "store",
        "ledger key",
        "tiles",
        "upstream",
        "listeners",
        "clock",
        "disk",
    }
    assert all(f["status"] == "ok" for f in found), found
    human = site.cli("doctor")
    assert human.returncode == 0 and human.stdout.strip().endswith("all good")


def _expired_cert(path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dns.example.net")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now - dt.timedelta(days=35))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _SkewedClock(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response_only(200)
        skewed = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        self.send_header("Date", email.utils.format_datetime(skewed, usegmt=True))
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def skewed_clock() -> Iterator[str]:
    """An HTTP server whose Date header is an hour ahead."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _SkewedClock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _corrupt_a_tile(site: Site) -> list[str]:
    """Flip a byte of every level-0 hash tile (full and partial ones)."""
    for tile in (site.root / "log" / "tile" / "0").rglob("*"):
        if tile.is_file():
            data = bytearray(tile.read_bytes())
            data[0] ^= 0xFF
            tile.write_bytes(bytes(data))
    return []


BREAKS: dict[str, tuple[set[str], Callable[[Site], list[str]]]] = {
    "store missing": (
        {"store", "tiles"},
        lambda s: (s.values.update(db=s.root / "nothing.db"), [])[1],
    ),
    "store not migrated": (
        {"store"},
        lambda s: (
            sqlite3.connect(s.values["db"])
            .execute("UPDATE alembic_version SET version_num = '0000_older'")
            .connection.commit(),
            [],
        )[1],
    ),
    "ledger key missing": (
        {"ledger key", "tiles"},
        lambda s: (Path(s.values["key"]).unlink(), [])[1],
    ),
    "ledger key replaced": (
        {"ledger key", "tiles"},
        lambda s: (
            Path(s.values["key"]).unlink(),
            create_key_file(Path(s.values["key"]), "clearwall.example/log"),
            [],
        )[2],
    ),
    "tiles damaged": ({"tiles"}, _corrupt_a_tile),
    "upstream dead": ({"upstream"}, lambda s: (s.values.update(upstream=free_port()), [])[1]),
    "disk too small": (
        {"disk"},
        lambda s: (
            s.values.update(logging="query_log = true\nquery_log_max_mb = 1000000000"),
            [],
        )[1],
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_each_broken_thing_is_found(site: Site, case: str) -> None:
    expected, breaker = BREAKS[case]
    args = breaker(site)
    rc, found, err = site.doctor(*args)
    failed = {f["check"] for f in found if f["status"] == "FAIL"}
    assert rc == 1, (found, err)
    assert failed == expected, found
    assert all(f["fix"] for f in found if f["status"] == "FAIL")


def test_a_listener_taken_by_another_program(site: Site) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", int(site.values["dns"])))  # type: ignore[call-overload]
        rc, found, _ = site.doctor()
    failed = [f for f in found if f["status"] == "FAIL"]
    assert rc == 1 and [f["check"] for f in failed] == ["listeners"], found
    assert "nothing answers DNS there" in failed[0]["detail"]


def test_an_expired_certificate(site: Site) -> None:
    cert = site.root / "expired.pem"
    _expired_cert(cert)
    rc, found, _ = site.doctor("--cert", str(cert))
    failed = [f for f in found if f["status"] == "FAIL"]
    assert rc == 1 and [f["check"] for f in failed] == ["certificates"], found
    assert "expired" in failed[0]["detail"] and "renew" in failed[0]["fix"]


def test_a_skewed_clock(site: Site, skewed_clock: str) -> None:
    rc, found, _ = site.doctor("--time-url", skewed_clock)
    failed = [f for f in found if f["status"] == "FAIL"]
    assert rc == 1 and [f["check"] for f in failed] == ["clock"], found
    assert "behind" in failed[0]["detail"]


@pytest.mark.parametrize(
    "status, why, expected",
    [
        (None, "", "warn"),  # added, never synced
        ("unreachable", "connection refused", "FAIL"),  # and never verified
        ("refused", "its log was rewritten", "FAIL"),
        ("ok", "", "ok"),
    ],
)
def test_a_followed_registry(site: Site, status: str | None, why: str, expected: str) -> None:
    from clearwall.federation import records
    from clearwall.store import open_store

    store = open_store(f"sqlite:///{site.values['db']}")
    vkey = create_key_file(site.root / "registry.key", "registry.example/log")
    mirror = records.add(store, "http://127.0.0.1:9/", vkey, {"xa": "xa"})
    if status == "ok":
        records.record_ok(store, mirror.id)
    elif status is not None:
        records.record_failure(store, mirror.id, status, why, "held", "offered" if why else "")
    store.dispose()
    rc, found, _ = site.doctor()
    mine = [f for f in found if f["check"] == "mirrors"]
    assert [f["status"] for f in mine] == [expected], found
    assert "http://127.0.0.1:9" in mine[0]["detail"] and why in mine[0]["detail"]
    assert rc == (1 if expected == "FAIL" else 0), found
    assert expected == "ok" or mine[0]["fix"]


def test_the_docs_table_lists_every_check() -> None:
    from clearwall.cli.doctor import CHECKS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = doc.split("## Doctor", 1)[1]
    table = re.findall(r"^\| ([a-z ]+) \|", section, re.M)
    assert [name for name, _ in CHECKS] == [t for t in table if t != "check"]


def test_a_node_without_the_key_follows_the_signer(site: Site) -> None:
    """One of several gateways on one store: no key file, ``[ledger] vkey`` names the
    signer's key (docs/cluster.md); nothing is wrong."""
    key = Path(site.values["key"])
    vkey = site.cli("ledger", "key").stdout.strip()
    key.unlink()
    site.values["vkey"] = vkey
    rc, found, err = site.doctor()
    assert rc == 0, (found, err)
    [ledger] = [f for f in found if f["check"] == "ledger key"]
    assert ledger["status"] == "ok" and vkey in ledger["detail"], ledger
