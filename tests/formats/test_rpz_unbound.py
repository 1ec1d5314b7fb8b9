"""Our RPZ export loaded by a real Unbound: the zone is accepted and enforces our rules."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from tests.ports import free_port

from clearwall.formats import export_rpz, parse_file
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
CHECKCONF = shutil.which("unbound-checkconf") or "/usr/sbin/unbound-checkconf"

pytestmark = pytest.mark.skipif(
    not Path(UNBOUND).exists(),
    reason="unbound not installed (scripts/install-system-deps.sh installs it)",
)

K = RuleKind
RULES = [
    (RuleSpec(K.SUBTREE, "bad.example"), Action.NXDOMAIN),
    (RuleSpec(K.EXACT, "quiet.example"), Action.NODATA),
    (RuleSpec(K.WILDCARD, "below.example"), Action.NXDOMAIN),
    (RuleSpec(K.EXACT, "walled.example"), Action.SINKHOLE),
    (RuleSpec(K.EXACT, "refused.example"), Action.REFUSED),
]


@pytest.fixture(scope="module")
def unbound(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[int]:
    """An Unbound on a loopback port with our export of RULES + a real list as its RPZ."""
    tmp = tmp_path_factory.mktemp("unbound")
    real = parse_file(data_dir / "hagezi/personal.adblock.txt").rules
    (tmp / "rpz.zone").write_text(
        export_rpz(RULES + [(rule, Action.NXDOMAIN) for rule in real], serial=3)
    )
    port = free_port()
    conf = tmp / "unbound.conf"
    conf.write_text(
        f"""server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    use-syslog: no
    logfile: "{tmp}/unbound.log"
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{tmp}"
    pidfile: "{tmp}/unbound.pid"
    module-config: "respip iterator"
    access-control: 127.0.0.0/8 allow
    # No upstream is reachable in tests: every name asked here must be answered by the RPZ.
rpz:
    name: "rpz.clearwall."
    zonefile: "{tmp}/rpz.zone"
remote-control:
    control-enable: no
"""
    )
    check = subprocess.run([CHECKCONF, str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                query("ready.bad.example", port)
                break
            except (OSError, dns.exception.Timeout):
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (
                        (tmp / "unbound.log").read_text() if (tmp / "unbound.log").exists() else ""
                    )
                    pytest.fail(f"unbound did not start: {log}")
                time.sleep(0.2)
        log = (tmp / "unbound.log").read_text()
        assert "error" not in log.lower(), log
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def query(name: str, port: int, rdtype: str = "A") -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)


@pytest.mark.parametrize(
    ("name", "rcode", "answer"),
    [
        ("bad.example", dns.rcode.NXDOMAIN, None),
        ("deep.sub.bad.example", dns.rcode.NXDOMAIN, None),
        ("quiet.example", dns.rcode.NOERROR, None),
        ("x.below.example", dns.rcode.NXDOMAIN, None),
        ("walled.example", dns.rcode.NOERROR, "0.0.0.0"),
        ("00917082-71e9-498e-8343-00c3df06b798.edge.permutive.app", dns.rcode.NXDOMAIN, None),
        ("sub.01.cdn.mediatradecraft.com", dns.rcode.NXDOMAIN, None),
    ],
)
def test_unbound_enforces_exported_rpz(
    unbound: int, name: str, rcode: int, answer: str | None
) -> None:
    response = query(name, unbound)
    assert response.rcode() == rcode
    records = [rr.to_text() for rrset in response.answer for rr in rrset]
    assert records == ([answer] if answer else [])


def test_unbound_treats_rpz_drop_as_no_answer(unbound: int) -> None:
    # Our REFUSED is exported as rpz-drop, which Unbound answers by dropping the query.
    with pytest.raises(dns.exception.Timeout):
        dns.query.udp(
            dns.message.make_query("refused.example", "A"), "127.0.0.1", port=unbound, timeout=1
        )
