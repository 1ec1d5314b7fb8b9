"""The gateway's DNS processes (``dnsserver.entry``, its workers) never load
``cryptography`` nor the log's signing key: the published checkpoint a restart checks is
verified in a short-lived child (``control.headcheck``), and everything else that signs
or verifies runs in the compiler's processes (issue 17, target 5: RSS)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store
from clearwall.store.reader import PolicyReader
from dnsserver.gateways import Gateway, children, launch, make_store, wait_for

Launch = Callable[..., Gateway]
__all__ = ["launch"]  # the fixture

# What ``cryptography`` maps into a process: its Rust extension and the cffi backend. A
# DNS process that loaded the signing key would map them too (loading the key derives
# its public half with ``cryptography``).
FORBIDDEN = ("cryptography", "_cffi_backend")


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def _dns_processes(gw: Gateway) -> list[int]:
    """The gateway process and the workers it forked (they keep its command line; the
    compiler and jobs children are programs of their own). The checkpoint's checker is
    forked too, but is gone by the time the gateway is ready: the count of these
    processes (``_forbidden_maps``) says it was reaped."""
    own = _cmdline(gw.proc.pid)
    return [gw.proc.pid, *(p for p in children(gw.proc.pid) if _cmdline(p) == own)]


def _forbidden_maps(gw: Gateway, workers: int) -> dict[int, list[str]]:
    """For each DNS process, the mapped files of ``FORBIDDEN`` (none, we expect)."""
    pids = _dns_processes(gw)
    assert len(pids) == (1 if workers == 1 else 1 + workers), pids
    found = {}
    for pid in pids:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        hits = sorted({line.split()[-1] for line in maps if any(f in line for f in FORBIDDEN)})
        if hits:
            found[pid] = hits
    return found


def _stop(gw: Gateway) -> None:
    gw.proc.send_signal(signal.SIGTERM)
    try:
        assert gw.proc.wait(30) == 0, gw.output
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        raise


@pytest.mark.parametrize("workers", [1, 2])
def test_the_dns_processes_never_load_cryptography(
    workers: int, tmp_path: Path, launch: Launch
) -> None:
    """First start (compile), restart (reuse, the checkpoint checked), an order added (an
    overlay compiled, then consolidated), SIGHUP: no DNS process maps ``cryptography``,
    and the restart still says what it checked the reused snapshot against."""
    url = make_store(tmp_path / "cw.db", ["blocked.example"])
    config = tmp_path / "cw.toml"
    config.write_text("[dns]\nreload_interval = 0.1\nconsolidate_after = 0.5\n")
    args = ("--config", str(config), "--workers", str(workers))

    gw = launch(url, tmp_path, *args, name="first")
    gw.wait_log("clearwall DNS ready")
    gw.wait_serving()
    assert gw.rcode("blocked.example") == dns.rcode.NXDOMAIN
    assert "compiled in" in gw.output
    assert _forbidden_maps(gw, workers) == {}
    _stop(gw)

    gw = launch(url, tmp_path, *args, name="restart")
    gw.wait_log("clearwall DNS ready")
    assert "reusing the saved snapshot policy-" in gw.output
    assert "checked against the published checkpoint (size 2) and the log" in gw.output
    assert gw.rcode("blocked.example") == dns.rcode.NXDOMAIN
    assert _forbidden_maps(gw, workers) == {}

    store = open_store(url)
    try:  # committed, not published: the gateway's compile publishes it first
        service = PolicyService(store)
        [court] = PolicyReader(store).authorities()
        rules = [RuleSpec(RuleKind.EXACT, "new.example")]
        order = ("Order 2", "Act s.2", "TT-2", "court-order", "nxdomain")
        service.add_order(court.id, *order, rules, effective_from="2020-01-01")
    finally:
        store.dispose()
    gw.wait_log("as an overlay over version 2")
    wait_for(lambda: gw.rcode("new.example") == dns.rcode.NXDOMAIN, 30, "the overlay")
    gw.wait_log("policy version 3 consolidated in")
    assert _forbidden_maps(gw, workers) == {}

    gw.proc.send_signal(signal.SIGHUP)
    gw.wait_log("SIGHUP: config reloaded" if workers == 1 else "SIGHUP: config sent to")
    gw.wait_serving()
    assert _forbidden_maps(gw, workers) == {}
    _stop(gw)
    assert "Traceback" not in gw.output
