"""The newcomer's path: the README's two commands work on a fresh clone; CI runs the test one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import httpx
import pytest
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "README has no ```sh block under '## Two commands'"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_commands() -> None:
    commands = _readme_commands()
    assert commands == ["make run", "make test"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))
    ]
    assert lines[-1].removeprefix("exec ").strip() == _readme_commands()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_run_on_a_fresh_clone(tmp_path: Path, data_dir: Path) -> None:
    """Clone the committed tree, run `make run`, and use it as a newcomer would."""
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("make or git is not installed on this machine")
    clone = tmp_path / "clearwall"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    dns_port = free_port()
    web_port = free_port()
    dot_port = free_port()
    doh_port = free_port()
    env = {**os.environ, "CLEARWALL_DATA": str(data_dir)}
    env.pop("VIRTUAL_ENV", None)
    log = (tmp_path / "make-run.log").open("w")
    proc = subprocess.Popen(
        [
            "make",
            "run",
            f"ARGS=--dns 127.0.0.1:{dns_port} --web 127.0.0.1:{web_port}",
            f"DOT=127.0.0.1:{dot_port}",
            f"DOH=127.0.0.1:{doh_port}",
        ],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        portal = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            try:
                portal = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(1)
        assert portal is not None, "portal never came up"
        assert portal.status_code == 200
        assert "clearwall" in portal.text.lower()
        # The demo policy blocks a real ransomware name for every jurisdiction.
        blocked = next(
            line.strip()
            for line in (data_dir / "blocklistproject/ransomware.domains.txt").open()
            if line.strip() and not line.startswith("#")
        )
        query = dns.message.make_query(blocked, "A", use_edns=0)
        reply = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=3)
        assert reply.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.REFUSED)
        ede = [opt for opt in reply.options if opt.otype == 15]
        assert ede, reply.to_text()
        # The SDE JSON links the order on the portal this command started.
        assert f"http://127.0.0.1:{web_port}/orders/" in (ede[0].text or ""), ede[0].text
        check = httpx.get(
            f"http://127.0.0.1:{web_port}/search", params={"name": blocked}, timeout=5
        )
        assert check.status_code == 200
        assert "blocked" in check.text.lower()
        # DoT and DoH with the certificate `clearwall init` made (verified, by name).
        context = ssl.create_default_context(cafile=str(clone / "var/tls/cert.pem"))
        over_tls = dns.query.tls(
            query,
            "127.0.0.1",
            port=dot_port,
            ssl_context=context,
            server_hostname="clearwall.localhost",
            timeout=5,
        )
        assert over_tls.rcode() == reply.rcode() and over_tls.options
        over_https = dns.query.https(
            query, f"https://127.0.0.1:{doh_port}/dns-query", verify=context, timeout=5
        )
        assert over_https.rcode() == reply.rcode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
