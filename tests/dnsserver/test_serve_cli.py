"""``clearwall serve`` start-up errors are one-line messages with exit status 1."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.ports import free_port


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clearwall", "serve", "--web", "off", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_serving(proc: subprocess.Popen[str], port: int, seconds: float = 30) -> None:
    """Wait until the gateway on 127.0.0.1:port answers anything; if it exits or never
    answers, fail with what it printed (its one-line error says why)."""
    import time

    import dns.exception
    import dns.message
    import dns.query

    deadline = time.monotonic() + seconds
    while True:
        try:
            query = dns.message.make_query("x.test", "A")
            dns.query.udp(query, "127.0.0.1", timeout=0.5, port=port)
            return
        except (dns.exception.Timeout, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, _ = proc.communicate(timeout=15)
                raise AssertionError(f"not serving (exit {proc.returncode}):\n{out}") from None


def test_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    result = _serve("--dns", "127.0.0.1:0", "--db", f"sqlite:///{tmp_path}/none/x.db", cwd=tmp_path)
    assert result.returncode == 1
    assert "clearwall: error: no clearwall store" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    from clearwall.policy.snapshot import PolicySnapshot

    snap = tmp_path / "empty.snap"
    PolicySnapshot.compile([], [], tree_size=0, base_url="").save(snap)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = _serve("--dns", f"127.0.0.1:{port}", "--snapshot", str(snap), cwd=tmp_path)
    assert result.returncode == 1
    assert f"clearwall: error: [dns] listen 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )


def test_bad_listen_flag(tmp_path: Path) -> None:
    result = _serve("--dns", "127.0.0.1:99999", cwd=tmp_path)
    assert result.returncode == 1 and "[dns] listen: port out of range" in result.stderr


def test_snapshots_live_beside_the_store_and_go_with_the_gateway(tmp_path: Path) -> None:
    import signal

    store = tmp_path / "store"
    store.mkdir()
    db = f"sqlite:///{store / 'cw.db'}"
    subprocess.run(  # init writes the ledger key and tiles beside the store
        [sys.executable, "-m", "clearwall", "init", "--db", db],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    port = free_port()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    argv = ["serve", "--web", "off", "--db", db, "--dns", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearwall", *argv, "--upstream", "127.0.0.1:9"],
        cwd=elsewhere,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_serving(proc, port)  # any reply (SERVFAIL: no upstream) means serving
        # Each snapshot directory with the lock file its gateway holds beside it.
        running = sorted(p.name for p in (store / "snapshots").iterdir() if p.is_dir())
        assert running and all(name.startswith("policy-") for name in running)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    # A clean stop keeps the last whole snapshot, with its provenance, for the next start
    # (which reuses it once the log confirms it), and nothing else but its lock file.
    left = sorted(p.name for p in (store / "snapshots").iterdir())
    assert left == [running[-1], f"{running[-1]}.lock"]
    assert (store / "snapshots" / running[-1] / "provenance.json").is_file()
    assert not (elsewhere / "var").exists()  # nothing written relative to the cwd


def test_start_log_names_upstreams_compile_time_and_policy_size(tmp_path: Path) -> None:
    """What an operator needs from the start-up log: which upstreams are in use and where
    they come from, and how long the policy took to compile and how big it is."""
    import signal

    db = f"sqlite:///{tmp_path / 'cw.db'}"
    subprocess.run(
        [sys.executable, "-m", "clearwall", "init", "--db", db],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.53\nnameserver 127.0.0.1\n")
    config = '[dns]\nlisten = ["127.0.0.1:53"]\n[dns.upstream]\n'
    (tmp_path / "cw.toml").write_text(config + f'resolv_conf = "{tmp_path}/resolv.conf"\n')
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "clearwall", "serve", "--web", "off", "--config", "cw.toml"),
            *("--db", db, "--dns", f"127.0.0.1:{port}"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "clearwall DNS ready" in line:
                break
        # resolv.conf was read without dns.resolver, whose DoQ client (aioquic) would
        # stay in every gateway process's memory (13 MiB with its HTTP and x509 stack).
        maps = Path(f"/proc/{proc.pid}/maps").read_text()  # serve execs the gateway
        assert "aioquic" not in maps and "sqlalchemy" not in maps
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    text = "".join(lines) + out
    # --dns moved the gateway off port 53, so 127.0.0.1:53 is another server, not itself.
    assert f"upstream: 192.0.2.53:53, 127.0.0.1:53 (from {tmp_path}/resolv.conf)" in text
    assert "policy version 0 compiled in " in text
    assert "0 orders, 0 names, 0 response-IP rules, 0 jurisdictions" in text
    assert "DNS misses: fused C path" in text

    # Started again on the same store: the saved snapshot, checked against the log.
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "clearwall", "serve", "--web", "off", "--config", "cw.toml"),
            *("--db", db, "--dns", f"127.0.0.1:{port}"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "clearwall DNS ready" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    text = "".join(lines) + out
    assert "policy version 0: reusing the saved snapshot policy-0-" in text
    assert "checked against the published checkpoint (size 0) and the log in " in text
    assert "compiled in" not in text


def test_no_usable_upstream_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    (tmp_path / "cw.toml").write_text(f'[dns.upstream]\nresolv_conf = "{tmp_path}/resolv.conf"\n')
    result = _serve("--config", "cw.toml", "--dns", "127.0.0.1:53", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "clearwall: error: [dns.upstream] servers is empty and" in result.stderr
    assert "lists no nameserver but this gateway itself (127.0.0.1:53)" in result.stderr


def test_a_reload_that_finds_no_upstream_keeps_the_running_chain(tmp_path: Path) -> None:
    """SIGHUP reads resolv.conf again; one that now lists nothing usable is refused with
    one logged line, and the gateway goes on serving with the chain it had."""
    import signal
    import time

    import dns.message
    import dns.query
    import dns.rcode

    from clearwall.policy.snapshot import PolicySnapshot

    snap = tmp_path / "empty.snap"
    PolicySnapshot.compile([], [], tree_size=0, base_url="").save(snap)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    (tmp_path / "cw.toml").write_text(
        f'[dns.upstream]\nresolv_conf = "{resolv}"\ntimeout = 0.2\nattempts = 1\n'
    )
    port = free_port()
    argv = ["serve", "--web", "off", "--config", "cw.toml", "--snapshot", str(snap)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearwall", *argv, "--dns", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def rcode() -> int | None:
        try:
            query = dns.message.make_query("x.test", "A")
            return dns.query.udp(query, "127.0.0.1", timeout=2, port=port).rcode()
        except (dns.exception.Timeout, OSError):
            return None

    try:
        _wait_serving(proc, port)
        resolv.write_text("")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert rcode() == dns.rcode.SERVFAIL  # still served: 192.0.2.53 does not answer
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "SIGHUP: config not reloaded: [dns.upstream] servers is empty and" in out
    assert "Traceback" not in out


def test_serve_execs_the_gateway_without_loading_sqlalchemy(tmp_path: Path) -> None:
    """The CLI process of ``clearwall serve --web off`` only parses flags and config and
    execs the lean entry: SQLAlchemy (about 0.12 s of a first start) is not imported
    there, the compiler loads it where it reads the store."""
    from clearwall.store.db import open_store

    url = f"sqlite:///{tmp_path / 'cw.db'}"
    open_store(url, migrate=True).engine.dispose()
    script = (
        "import os, sys\n"
        "def execv(path, argv):\n"
        "    print('sqlalchemy' in sys.modules, argv[1:3]); sys.exit(0)\n"
        "os.execv = execv\n"
        "from clearwall.cli.main import main\n"
        f"sys.argv = ['clearwall', 'serve', '--web', 'off', '--db', {url!r},\n"
        "            '--dns', '127.0.0.1:0', '--upstream', '127.0.0.1:53']\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False ['-m', 'clearwall.dnsserver.entry']"
