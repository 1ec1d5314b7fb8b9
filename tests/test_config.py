"""The typed config: TOML and overrides become frozen value objects; errors name the option."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from clearwall.config import Config, HostPort, load_config
from clearwall.errors import ConfigError


def test_defaults_are_the_embedded_setup() -> None:
    config = load_config()
    assert config == Config()
    assert config.dns.listen == (HostPort("127.0.0.1", 8053),)
    assert config.web.listen == HostPort("127.0.0.1", 8080)
    assert config.store.url.startswith("sqlite:///")


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[store]
url = "sqlite:///x.db"
[dns]
listen = ["127.0.0.1:9053", "[::1]:9053"]
allow_networks = ["10.0.0.0/8", "2001:db8::/32"]
[dns.upstream]
servers = ["127.0.0.1:5300"]
timeout = 2
"""
    )
    config = load_config(path, overrides={"dns": {"workers": 2}})
    assert config.store.url == f"sqlite:///{tmp_path}/x.db"  # relative to the file
    assert config.dns.listen == (HostPort("127.0.0.1", 9053), HostPort("::1", 9053))
    assert config.dns.allow_networks[1] == ipaddress.ip_network("2001:db8::/32")
    assert config.dns.upstream.servers == (HostPort("127.0.0.1", 5300),)
    assert config.dns.upstream.timeout == 2.0
    assert config.dns.workers == 2


@pytest.mark.parametrize(
    "url, expected",
    [
        ("sqlite:///state/cw.db", "sqlite:///{base}/state/cw.db"),
        ("sqlite+pysqlite:///cw.db?timeout=5", "sqlite+pysqlite:///{base}/cw.db?timeout=5"),
        ("sqlite:////var/lib/cw.db", "sqlite:////var/lib/cw.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://cw@/cw?host=/run/postgresql", "postgresql://cw@/cw?host=/run/postgresql"),
    ],
)
def test_a_config_file_names_files_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    """What a config file names means the same from any working directory (systemd runs
    in /): the store's SQLite file and the TLS and CA files as the ledger's paths."""
    base = tmp_path / "etc"
    base.mkdir()
    path = base / "cw.toml"
    path.write_text(
        f'''[store]
url = "{url}"
[dns]
tls_cert = "tls/cert.pem"
tls_key = "/abs/key.pem"
[dns.upstream]
ca_file = "ca.pem"
'''
    )
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.store.url == expected.format(base=base)
    assert config.dns.tls_cert == str(base / "tls/cert.pem")
    assert config.dns.tls_key == "/abs/key.pem"
    assert config.dns.upstream.ca_file == str(base / "ca.pem")
    flags = load_config(path, overrides={"store": {"url": "sqlite:///flag.db"}})
    assert flags.store.url == "sqlite:///flag.db"  # a command-line path is the caller's


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dns": {"workers": "two"}}, "[dns] workers: expected an integer"),
        ({"dns": {"listen": ["nonsense"]}}, "[dns] listen"),
        ({"dns": {"bogus": 1}}, "[dns] unknown option(s): bogus"),
        ({"dns": {"upstream": {"servers": ["1.2.3.4:99999"]}}}, "[dns.upstream] servers"),
        ({"dns": {"allow_networks": ["10.0.0.0/33"]}}, "[dns] allow_networks"),
        (
            {"dns": {"upstream": {"minimal_responses": "yes"}}},
            "[dns.upstream] minimal_responses: expected true or false",
        ),
        ({"dns": {"special_use": {"forward": ["example.com"]}}}, "[dns.special_use] forward"),
        ({"dns": {"special_use": {"forward": [53]}}}, "[dns.special_use] forward: expected a"),
        ({"web": {"listen": "localhost:80"}}, "[web] listen"),
        ({"nosuch": {}}, "unknown option(s): nosuch"),
        ({"xfr": {"listen": ["nowhere:53"]}}, "[xfr] listen"),
        ({"xfr": {"allow": ["10.0.0.0/33"]}}, "[xfr] allow"),
        ({"xfr": {"secondaries": ["192.0.2.1 kee k1"]}}, "[xfr] secondaries: expected"),
        ({"xfr": {"secondaries": ["192.0.2.1 key"]}}, "[xfr] secondaries: expected"),
        ({"xfr": {"secondaries": ["192.0.2.1 key ."]}}, "[xfr] secondaries: an empty key name"),
        ({"xfr": {"suffix": "a..b"}}, "[xfr] suffix: not a domain name"),
        ({"xfr": {"history": 0}}, "[xfr] history: must be at least 1"),
        ({"xfr": {"notify_timeout": 0}}, "[xfr] notify_timeout: must be positive"),
    ],
)
def test_errors_name_the_option(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[dns\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "port", "expected"),
    [
        ("127.0.0.1", 53, HostPort("127.0.0.1", 53)),
        ("127.0.0.1:5353", 53, HostPort("127.0.0.1", 5353)),
        ("::1", 53, HostPort("::1", 53)),
        ("[::1]:8053", 53, HostPort("::1", 8053)),
    ],
)
def test_hostport(text: str, port: int, expected: HostPort) -> None:
    assert HostPort.parse(text, port) == expected
    assert HostPort.parse(str(expected), 1) == expected


W1 = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
LOG_KEY = "witness.example/w1+3218362d+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"


def test_witnesses_are_parsed_at_load() -> None:
    ledger = load_config(
        overrides={
            "ledger": {
                "witnesses": [{"url": "http://127.0.0.1:7380/", "vkey": W1}],
                "witness_quorum": 1,
            }
        }
    ).ledger
    assert ledger.witnesses[0].url == "http://127.0.0.1:7380"
    assert ledger.witness_quorum == 1


def test_keys_in_the_config_are_checked_without_cryptography(tmp_path: Path) -> None:
    """A gateway loads the config: ``[ledger] vkey`` and the witnesses' keys are parsed
    and checked (base64, key id) without loading ``cryptography`` (7-8 MiB of every DNS
    process), which only signing and verifying need."""
    import subprocess
    import sys

    from clearwall.ledger.signing import generate_signer

    vkey = generate_signer("clearwall.example/log").verifier.vkey
    path = tmp_path / "c.toml"
    path.write_text(
        f'[ledger]\nvkey = "{vkey}"\nwitness_quorum = 1\n'
        f'witnesses = [{{ url = "http://127.0.0.1:7380/", vkey = "{W1}" }}]\n'
    )
    script = (
        "import sys\n"
        "from clearwall.config import load_config\n"
        f"ledger = load_config({str(path)!r}).ledger\n"
        f"assert ledger.vkey == {vkey!r} and ledger.witnesses[0].vkey == {W1!r}\n"
        "loaded = ('cryptography', '_cffi_backend')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        ({"witnesses": "http://x"}, "[ledger] witnesses: expected a list"),
        ({"witnesses": [{"url": "http://x"}]}, "[ledger] witnesses[1]: expected exactly"),
        ({"witnesses": [{"url": "ftp://x", "vkey": W1}]}, "[ledger] witnesses[1].url"),
        (
            {"witnesses": [{"url": "http://x", "vkey": LOG_KEY}], "witness_quorum": 1},
            "[ledger] witnesses[1].vkey: verifier key: not an Ed25519 cosigner key",
        ),
        (
            {"witnesses": [{"url": "http://x", "vkey": W1}, {"url": "http://y", "vkey": W1}]},
            "listed twice",
        ),
        ({"witnesses": [{"url": "http://x", "vkey": W1}]}, "witness_quorum: set how many"),
        ({"witness_quorum": 1}, "witness_quorum: 1 is not between 0 and the 0"),
        ({"witness_timeout": 0}, "must be positive"),
    ],
)
def test_witness_errors_name_the_option(ledger: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides={"ledger": ledger})
    assert message in str(info.value)


def test_xfr_secondaries_and_listen() -> None:
    config = load_config(
        overrides={
            "xfr": {
                "listen": ["127.0.0.1:8054"],
                "secondaries": [
                    "192.0.2.10",
                    "[2001:db8::1]:5353 key R1.",  # key names are DNS names, as in the key file
                    "192.0.2.11 for xa,XB",
                ],
                "metrics_listen": "127.0.0.1:9155",
            }
        }
    )
    assert config.xfr.listen == (HostPort("127.0.0.1", 8054),)
    assert [str(s) for s in config.xfr.secondaries] == [
        "192.0.2.10:53",
        "[2001:db8::1]:5353 key r1",
        "192.0.2.11:53 for xa,xb",
    ]
    assert config.xfr.metrics_listen == HostPort("127.0.0.1", 9155)
    assert load_config().xfr.listen == ()  # off unless asked for
