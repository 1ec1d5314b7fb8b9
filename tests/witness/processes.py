"""Real ``clearwall witness serve`` processes on loopback, for the witness and ledger tests."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.ports import free_port


def clearwall(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess (no CLEARWALL_* variables from the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc


@dataclass
class WitnessProcess:
    """One witness: its key, database and port; ``start``/``stop`` the real server."""

    home: Path
    name: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def db(self) -> str:
        """The witness's SQLite URL."""
        return f"sqlite:///{self.home / 'witness.db'}"

    @property
    def key(self) -> Path:
        """The witness's key file."""
        return self.home / "witness.key"

    @property
    def url(self) -> str:
        """The submission (and monitoring) prefix."""
        return f"http://127.0.0.1:{self.port}"

    @functools.cached_property
    def vkey(self) -> str:
        """The verifier key, printed by ``clearwall witness key`` (creating the key)."""
        self.home.mkdir(parents=True, exist_ok=True)
        out = clearwall(
            "witness", "key", "--key", str(self.key), "--name", self.name, cwd=self.home
        )
        return out.stdout.strip()

    def add_log(self, origin: str, vkey: str) -> None:
        """``clearwall witness logs add ORIGIN VKEY``."""
        clearwall("witness", "logs", "add", origin, vkey, "--db", self.db, cwd=self.home)

    def start(self) -> WitnessProcess:
        """Start ``clearwall witness serve`` and wait until it answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "serve.log", "a")  # noqa: SIM115 (kept open for the child)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearwall",
                "witness",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                self.db,
                "--key",
                str(self.key),
                "--name",
                self.name,
            ],
            cwd=self.home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError((self.home / "serve.log").read_text())
            try:
                httpx.get(self.url + "/", timeout=1, trust_env=False)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"witness {self.name} did not start")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
