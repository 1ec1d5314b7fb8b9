#!/usr/bin/env python3
"""Resource-exhaustion scenarios (issue 14 section 4) against a real ``clearwall serve``.

Each scenario starts a fresh ``clearwall serve`` (DNS and the web app on loopback, the
defaults a new user gets, a demo store made by ``clearwall init --demo``), measures the
server's resident memory (VmRSS of its process) before, at its peak (sampled every 20 ms)
and a few seconds after the abusive clients went away, and whether ordinary clients are
still served meanwhile:

* ``idle``     -- ``--idle`` (1,000 = ``max_tcp_connections``) idle TCP connections, then
  new clients ask one TCP query each;
* ``trickle``  -- ``--trickle`` (1,050) connections each sending one byte per second of a
  message that never completes, for ``--trickle-seconds`` (26); a new client asks every
  two seconds, and the connections the server closed are counted;
* ``pipeline`` -- four connections pipelining ``--queries`` (400,000) queries in all for
  a blocked name (answered at once, with EDE and Structured DNS Error JSON), never
  reading a reply, and holding the connections open for ``--pipeline-seconds`` (15);
* ``body``     -- a ``--body-mib`` (100) MiB POST to ``/api/v1/orders`` without any token,
  once with ``Content-Length`` and once chunked.

Every load stops by itself; the server is stopped (SIGTERM, then SIGKILL) after each
scenario. Run from the checkout: ``.venv/bin/python bench/abuse.py [--scenarios a,b]``;
the figures are printed and written to ``bench/results/abuse-latest.json``. To measure
another version of the code, put its ``src`` first: ``PYTHONPATH=/other/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLEARWALL = [str(ROOT / ".venv" / "bin" / "python"), "-m", "clearwall"]
RESULTS = ROOT / "bench" / "results" / "abuse-latest.json"
BLOCKED = "aqmip.fr"  # blocked everywhere in the demo policy: answered without upstream
SCENARIOS = ("idle", "trickle", "pipeline", "body")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (best effort)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/<pid>/status in MiB (0 when the process is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def query(name: str, qid: int, edns: bool = True) -> bytes:
    """An RD=1 A query (with EDNS 1232 unless ``edns`` is false), built by hand."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    header = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00"
    header += b"\x00\x01" if edns else b"\x00\x00"
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00" if edns else b""
    return header + labels + b"\x00\x00\x01\x00\x01" + opt


def tcp_ask(port: int, timeout: float = 2.0) -> float | None:
    """Seconds one TCP query for the blocked name took, or None when it got no reply."""
    start = time.monotonic()
    msg = query(BLOCKED, 4242)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(len(msg).to_bytes(2, "big") + msg)
            head = b""
            while len(head) < 2:
                chunk = s.recv(2 - len(head))
                if not chunk:
                    return None
                head += chunk
            size = int.from_bytes(head, "big")
            body = b""
            while len(body) < size:
                chunk = s.recv(size - len(body))
                if not chunk:
                    return None
                body += chunk
    except OSError:
        return None
    # The demo blocks the name with NXDOMAIN: anything else (FORMERR...) is no answer.
    ok = body[:2] == msg[:2] and body[2] & 0x80 and body[3] & 0x0F == 3
    return round(time.monotonic() - start, 3) if ok else None


class Sampler:
    """Samples a process's VmRSS every 20 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, pid: int) -> None:
        """Start sampling ``pid``."""
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        """Stop sampling; the peak in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak


class Server:
    """``clearwall serve`` on loopback over a copy of the demo store; always torn down."""

    def __init__(self, work: Path, store: Path, extra: list[str]) -> None:
        """Start it and wait until DNS and the web app answer."""
        self.dns_port = free_port()
        self.web_port = free_port()
        self.log = work / f"serve-{self.dns_port}.log"
        argv = [
            *CLEARWALL,
            "serve",
            "--db",
            f"sqlite:///{store}",
            "--dns",
            f"127.0.0.1:{self.dns_port}",
            "--web",
            f"127.0.0.1:{self.web_port}",
            "--upstream",
            "127.0.0.1:9",  # nothing listens: only blocked names are asked
            *extra,
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=store.parent,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while tcp_ask(self.dns_port, 0.5) is None or not self._web_up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"clearwall serve did not start: {self.log.read_text()[-800:]}")
            time.sleep(0.2)
        time.sleep(1.0)  # let start-up garbage settle before the baseline

    def _web_up(self) -> bool:
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{self.web_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        return False

    def metric(self, name: str) -> float:
        """The sum of a Prometheus metric's samples on the web app's /metrics."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    @property
    def pid(self) -> int:
        """The serving process (DNS and web app share it)."""
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
                return


@contextlib.contextmanager
def measured(server: Server, result: dict[str, Any]) -> Iterator[None]:
    """Record RSS before, the peak during the block, and RSS 3 s after it."""
    result["rss_before_mib"] = rss_mib(server.pid)
    sampler = Sampler(server.pid)
    try:
        yield
    finally:
        time.sleep(3.0)
        result["rss_peak_mib"] = sampler.stop()
        result["rss_after_mib"] = rss_mib(server.pid)
        result["server_alive"] = server.proc.poll() is None


def run_async(coro_fn: Callable[[], Any]) -> Any:
    """Run a coroutine function in a fresh event loop."""
    return asyncio.run(coro_fn())


# ------------------------------------------------------------------------ scenarios


def scenario_idle(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Fill the TCP table with idle connections, then ask as new clients."""
    result: dict[str, Any] = {"idle_connections": args.idle}

    async def go() -> None:
        conns = []
        for _ in range(args.idle):
            conns.append(await asyncio.open_connection("127.0.0.1", server.dns_port))
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        answered = []
        for _ in range(10):
            answered.append(await loop.run_in_executor(None, tcp_ask, server.dns_port, 2.0))
        result["new_clients_answered"] = sum(a is not None for a in answered)
        result["new_clients_asked"] = len(answered)
        result["new_client_seconds"] = [a for a in answered if a is not None][:3]
        await asyncio.sleep(0.5)
        result["idle_closed_by_server"] = sum(reader.at_eof() for reader, _w in conns)
        for _r, w in conns:
            w.close()

    with measured(server, result):
        run_async(go)
    return result


def scenario_trickle(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Slow connections sending one byte a second; new clients ask every two seconds."""
    result: dict[str, Any] = {"slow_connections": args.trickle, "seconds": args.trickle_seconds}

    async def go() -> None:
        loop = asyncio.get_running_loop()
        conns = []
        for _ in range(args.trickle):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.dns_port)
            writer.write(b"\x02\x00")  # a 512-byte message that never completes
            conns.append((reader, writer))
        closed_at: dict[int, float] = {}
        start = time.monotonic()

        async def watch(i: int, reader: asyncio.StreamReader) -> None:
            with contextlib.suppress(OSError):
                await reader.read()
            closed_at[i] = time.monotonic() - start

        watchers = [asyncio.ensure_future(watch(i, r)) for i, (r, _w) in enumerate(conns)]
        answered = asked = 0
        next_ask = start + 2.0
        while time.monotonic() - start < args.trickle_seconds:
            for i, (_r, w) in enumerate(conns):
                if i not in closed_at and not w.is_closing():
                    with contextlib.suppress(OSError):
                        w.write(b"\x00")
            if time.monotonic() >= next_ask:
                asked += 1
                answered += (
                    await loop.run_in_executor(None, tcp_ask, server.dns_port, 1.0) is not None
                )
                next_ask += 2.0
            await asyncio.sleep(1.0)
        result["closed_by_server"] = len(closed_at)
        result["closed_within_1s"] = sum(t < 1.0 for t in closed_at.values())
        result["new_clients_asked"] = asked
        result["new_clients_answered"] = answered
        for w in watchers:
            w.cancel()
        for _r, w in conns:
            w.close()

    with measured(server, result):
        run_async(go)
    return result


def scenario_pipeline(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Four connections write queries as fast as they can and never read."""
    per_conn = args.queries // 4
    result: dict[str, Any] = {"connections": 4, "queries_offered": per_conn * 4}
    msg = query(BLOCKED, 1)
    frame = len(msg).to_bytes(2, "big") + msg
    chunk = frame * 1000
    before = server.metric("clearwall_dns_queries_total")

    def writer(sent: list[int], deadline: float) -> None:
        with socket.create_connection(("127.0.0.1", server.dns_port)) as s:
            s.setblocking(False)
            left = per_conn * len(frame)
            while left > 0 and time.monotonic() < deadline:
                try:
                    n = s.send(chunk[: min(len(chunk), left)])
                except BlockingIOError:
                    time.sleep(0.005)
                    continue
                except OSError:
                    break
                left -= n
            sent.append(per_conn * len(frame) - left)
            # Hold the connection, replies unread, until the deadline; then close.
            time.sleep(max(0.0, deadline - time.monotonic()))

    with measured(server, result):
        sent: list[int] = []
        start = time.monotonic()
        deadline = start + args.pipeline_seconds
        threads = [threading.Thread(target=writer, args=(sent, deadline)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result["bytes_sent"] = sum(sent)
        result["queries_answered_by_server"] = int(
            server.metric("clearwall_dns_queries_total") - before
        )
    result["new_client_seconds"] = tcp_ask(server.dns_port, 2.0)
    return result


def post_body(port: int, mib: int, chunked: bool) -> dict[str, Any]:
    """POST ``mib`` MiB to /api/v1/orders without a token; the status and bytes sent."""
    head = f"POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "Content-Type: application/json\r\n"
    total = mib << 20
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    head += "\r\n"
    # Valid JSON (one huge string) so that a server that reads it also parses it.
    pieces = [b'{"rules": "' + b"x" * ((1 << 20) - 11)]
    pieces += [b"x" * (1 << 20)] * (mib - 2) + [b"x" * ((1 << 20) - 2) + b'"}']
    if chunked:
        pieces = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces]
    sent = 0
    answer = b""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head.encode())
        s.setblocking(False)
        done = 0
        while done < mib and not answer:
            view = memoryview(pieces[done])
            while view:
                try:
                    n = s.send(view)
                    view = view[n:]
                    sent += n
                except BlockingIOError:
                    with contextlib.suppress(BlockingIOError):
                        answer += s.recv(65536)
                    if answer:
                        break
                    time.sleep(0.001)
                except OSError:
                    break
            else:
                done += 1
                continue
            break
        if not answer and done == mib and chunked:
            with contextlib.suppress(OSError):
                s.sendall(b"0\r\n\r\n")
        s.setblocking(True)
        s.settimeout(60)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
            with contextlib.suppress(TimeoutError):
                s.settimeout(0.5)
                answer += s.recv(65536)
    status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
    body = answer.partition(b"\r\n\r\n")[2][:200].decode(errors="replace")
    return {
        "status": status,
        "body": body,
        "mib_sent": round(sent / (1 << 20), 2),
        "seconds": round(time.monotonic() - start, 2),
    }


def scenario_body(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """A huge body with Content-Length, then a chunked one, both without a token."""
    result: dict[str, Any] = {"body_mib": args.body_mib}
    with measured(server, result):
        result["content_length"] = post_body(server.web_port, args.body_mib, chunked=False)
        result["chunked"] = post_body(server.web_port, args.body_mib, chunked=True)
    return result


RUNNERS: dict[str, Callable[[Server, argparse.Namespace], dict[str, Any]]] = {
    "idle": scenario_idle,
    "trickle": scenario_trickle,
    "pipeline": scenario_pipeline,
    "body": scenario_body,
}


def raise_fd_limit() -> None:
    """Let this process (and the server it starts) hold a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def clearwall_source() -> str:
    """The directory of the clearwall package the server runs (PYTHONPATH may point
    elsewhere than this checkout, to measure another version)."""
    code = "import clearwall, os; print(os.path.dirname(os.path.abspath(clearwall.__file__)))"
    done = subprocess.run([CLEARWALL[0], "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def git_head() -> str:
    """The commit measured (with a + when the tree has changes)."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "src"], check=False
        ).returncode
        return head.decode().strip() + ("+" if dirty else "")
    return "unknown"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--trickle", type=int, default=1050)
    p.add_argument("--trickle-seconds", type=float, default=26.0)
    p.add_argument("--queries", type=int, default=400_000)
    p.add_argument("--pipeline-seconds", type=float, default=15.0)
    p.add_argument("--body-mib", type=int, default=100)
    p.add_argument("--serve-arg", action="append", default=[], help="extra `serve` flag")
    p.add_argument("--output", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the chosen scenarios, print and save the figures."""
    args = parse_args(argv)
    raise_fd_limit()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(RUNNERS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"commit": git_head(), "source": clearwall_source(), "scenarios": {}}
    print("clearwall from", report["source"], flush=True)
    with tempfile.TemporaryDirectory(prefix="clearwall-abuse-") as tmp:
        work = Path(tmp)
        store = work / "store" / "cw.db"
        store.parent.mkdir()
        subprocess.run(
            [*CLEARWALL, "init", "--demo", "--db", f"sqlite:///{store}"],
            cwd=store.parent,
            check=True,
            capture_output=True,
        )
        for name in chosen:
            server = Server(work, store, args.serve_arg)
            try:
                figures = RUNNERS[name](server, args)
            finally:
                server.stop()
            report["scenarios"][name] = figures
            print(name, json.dumps(figures), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
