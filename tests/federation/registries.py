"""A registry for mirror tests: a real store with its ledger, its public log served as
static files over HTTP on loopback (as a CDN would), and a mirror store beside it."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clearwall.config import LedgerConfig
from clearwall.layout import resolve_ledger
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.signing import create_key_file, load_signer
from clearwall.model import RuleKind
from clearwall.policy.model import Order, RuleSpec
from clearwall.store import PolicyService, Store, open_store

ORIGIN = "registry.tt.example/log"


def publisher(tlog: TransparencyLog) -> Callable[[], None]:
    """The after-commit hook publishing each write (tiles, checkpoint), as the CLI's."""

    def publish() -> None:
        tlog.sync()

    return publish


def make_store(db: Path, origin: str, jurisdictions: dict[str, list[str]]) -> tuple[str, str]:
    """A SQLite store at ``db`` with its ledger key (named ``origin``) and the given
    jurisdictions (code -> networks); its URL and its verifier key."""
    url = f"sqlite:///{db}"
    ledger = resolve_ledger(LedgerConfig(origin=origin), url)
    if not ledger.key_path().exists():
        create_key_file(ledger.key_path(), origin)
    store = open_store(url, migrate=True)
    try:
        service = PolicyService(store, after_commit=publisher(TransparencyLog(store, ledger)))
        for code, nets in jurisdictions.items():
            service.add_jurisdiction(code, code.upper() + "land", nets)
    finally:
        store.dispose()
    return url, load_signer(ledger.key_path()).verifier.vkey


class _Files(http.server.SimpleHTTPRequestHandler):
    """Static files, except the paths the test overrides (garbage, another log)."""

    overrides: dict[str, bytes]

    def do_GET(self) -> None:
        body = self.overrides.get(self.path)
        if body is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Registry:
    """A registry installation: its store, write path and static ``/log/`` on HTTP."""

    root: Path
    origin: str = ORIGIN
    overrides: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.url_db, self.vkey = make_store(
            self.root / "registry.db", self.origin, {"tt": ["10.0.0.0/8"], "uu": ["11.0.0.0/8"]}
        )
        self.ledger = resolve_ledger(LedgerConfig(origin=self.origin), self.url_db)
        self.store = open_store(self.url_db)
        self.tlog = TransparencyLog(self.store, self.ledger)
        self.service = PolicyService(self.store, after_commit=publisher(self.tlog))
        self.court = self.service.add_authority("Testland Court", "court", "tt", ["mailto:c@tt"])
        self.other = self.service.add_authority("Uland Court", "court", "uu")
        www = self.root / "www"
        www.mkdir()
        (www / "log").symlink_to(self.ledger.tiles_path())
        handler = type("Files", (_Files,), {"overrides": self.overrides})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(www))
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def order(
        self, names: list[str], reference: str = "TT-1", authority: int | None = None
    ) -> Order:
        """Publish an order blocking ``names`` (subtree rules)."""
        return self.service.add_order(
            authority or self.court.id,
            f"Order {reference}",
            "Act s.1",
            reference,
            "court-order",
            "nxdomain",
            [RuleSpec(RuleKind.SUBTREE, n) for n in names],
            effective_from="2020-01-01",
        )

    def republish_from(self, other: Registry) -> None:
        """Serve ``other``'s log at this registry's address (a rewritten registry)."""
        target = self.root / "www" / "log"
        target.unlink()
        target.symlink_to(other.ledger.tiles_path())

    def close(self) -> None:
        """Stop serving and close the store."""
        self.server.shutdown()
        self.server.server_close()
        self.store.dispose()


def mirror_store(
    root: Path, codes: dict[str, list[str]] | None = None
) -> tuple[PolicyService, Store]:
    """An ISP installation's store (jurisdiction ``tt`` for every client by default) and
    its write path publishing to its own log."""
    url, _ = make_store(root / "isp.db", LedgerConfig().origin, codes or {"tt": ["0.0.0.0/0"]})
    store = open_store(url)
    tlog = TransparencyLog(store, resolve_ledger(LedgerConfig(), url))
    return PolicyService(store, after_commit=publisher(tlog)), store


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory (a snapshot of a published log)."""
    shutil.copytree(src, dst, symlinks=True)


def serve_registry(root: Path) -> Iterator[Registry]:
    """A registry for one test, stopped at its end."""
    reg = Registry(root)
    try:
        yield reg
    finally:
        reg.close()
