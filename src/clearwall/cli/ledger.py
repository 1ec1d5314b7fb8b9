"""The ``clearwall ledger`` commands: key, sync, verify, prove, verify-proof, serve.

Every check exits with status 1 and a one-line reason on the first error, or (for
``verify``) after listing every problem found, each naming the entry index or order.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, fail, settings
from clearwall.config import HostPort

WitnessOption = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="A witness's verifier key (C2SP vkey, type 0x04), optionally followed by a space"
        " and its URL to ask about conflicts; repeatable.",
        show_default=False,
    ),
]
QuorumOption = Annotated[
    int | None,
    typer.Option(
        "--quorum",
        help="Valid cosignatures required from the --witness keys (default: all of them).",
        show_default=False,
    ),
]


def require_witnesses(note: str, log: Any, witnesses: list[str], quorum: int | None) -> str:
    """Exit 1 unless ``note`` has the quorum of cosignatures; name who is missing and why.

    Witnesses given with a URL are asked which checkpoint they hold, so a fork is named
    as such rather than as a missing cosignature. Returns a phrase for the ok line.
    """
    import time

    from clearwall.ledger.cosignature import policy_from_args
    from clearwall.ledger.remote import witness_conflicts

    policy, urls = policy_from_args(witnesses, quorum)
    if policy is None:
        return ""
    report = policy.check(note, log, int(time.time()))
    if report.ok:
        names = ", ".join(r.witness.name for r in report.valid)
        return f"; cosigned by {len(report.valid)} of {len(report.results)} witnesses ({names})"
    conflicts = witness_conflicts(note, log, report, urls) if urls else []
    fail("; ".join([report.failure(), *conflicts]))


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` command group to the root app."""
    ledger = typer.Typer(
        help="The public transparency log: keys, checkpoints, tiles, proofs, audits.",
        no_args_is_help=True,
    )
    app.add_typer(ledger, name="ledger")

    def open_log(db: str | None, config: Path | None):  # type: ignore[no-untyped-def]
        from clearwall.ledger.log import TransparencyLog
        from clearwall.store import open_store

        s = settings(db, config)
        store = open_store(s.db_url)
        return TransparencyLog(store, s.config.ledger), store

    @ledger.command("key")
    def key(db: DbOption = None, config: ConfigOption = None) -> None:
        """Print the log's verifier key (C2SP vkey: name+keyid+base64); publish it."""
        from clearwall.ledger.signing import load_signer

        with errors():
            s = settings(db, config)
            typer.echo(load_signer(s.config.ledger.key_path()).verifier.vkey)

    @ledger.command("sync")
    def sync(db: DbOption = None, config: ConfigOption = None) -> None:
        """Write tiles, entry bundles, rule files and a signed checkpoint for new entries."""
        with errors():
            tlog, _ = open_log(db, config)
            result = tlog.sync()
            typer.echo(
                f"log size {result.new_size} (was {result.old_size}), "
                f"{result.tiles_written} tiles written"
            )

    @ledger.command("verify")
    def verify(
        db: DbOption = None,
        config: ConfigOption = None,
        vkey: Annotated[
            str | None,
            typer.Option("--vkey", help="Verifier key to trust (default: from the key file)."),
        ] = None,
        url: Annotated[
            str | None,
            typer.Option(
                "--url",
                help="Verify a published log instead (https://host/log or a tiles directory);"
                " needs --vkey.",
            ),
        ] = None,
    ) -> None:
        """Recompute the tree from the stored entries and check checkpoints, tiles and rules.

        With --url, verify the public log anyone can fetch: the signature, every entry
        bundle against the signed root, and every hash tile.
        """
        from clearwall.ledger.audit import audit
        from clearwall.ledger.signing import parse_vkey
        from clearwall.store.logmatch import checker

        if url is not None:
            from clearwall.ledger.remote import fetch_and_verify

            if not vkey:
                fail("--url needs --vkey (the log's published verifier key)")
            with errors():
                remote = fetch_and_verify(url, parse_vkey(vkey))
            for problem in remote.problems:
                typer.echo(f"TAMPERED: {problem}", err=True)
            if remote.problems:
                fail(f"log verification failed: {len(remote.problems)} problem(s)")
            cp = remote.checkpoint
            typer.echo(f"ok: {cp.size} entries, root {cp.root.hex()}, tiles match")
            return
        from clearwall.federation.verify import check_adoptions

        with errors():
            tlog, store = open_log(db, config)
            verifier = parse_vkey(vkey) if vkey else tlog.verifier
            report = audit(store, tlog, verifier, checker(store))
            # Every adoption against the registry's own log, when it can be reached.
            adoptions = check_adoptions(store)
        for problem in report.problems:
            typer.echo(f"TAMPERED: {problem}", err=True)
        for lag in report.unpublished:
            typer.echo(f"UNPUBLISHED: {lag}", err=True)
        for problem in adoptions.problems:
            typer.echo(f"ADOPTION NOT BORNE OUT: {problem}", err=True)
        for note in adoptions.unchecked:
            typer.echo(f"UNCHECKED: {note}", err=True)
        if not report.ok or adoptions.problems:
            count = len(report.problems) + len(report.unpublished) + len(adoptions.problems)
            fail(f"ledger verification failed: {count} problem(s)")
        summary = report.summary()
        if adoptions.checked:
            summary += (
                f"; {adoptions.checked} adoption entr(ies) borne out by "
                f"{adoptions.registries} registry log(s)"
            )
        typer.echo(f"ok: {summary}")

    @ledger.command("prove")
    def prove(
        name: Annotated[str, typer.Argument(help="The domain name to prove about.")],
        jurisdiction: Annotated[
            str, typer.Option("--jurisdiction", "-j", help="Jurisdiction code of the clients.")
        ] = "",
        at: Annotated[
            str | None, typer.Option(help="ISO time to prove for (default: now).")
        ] = None,
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Print a self-contained JSON proof of whether NAME is blocked, from the log."""
        from clearwall.ledger.prover import NameProver

        with errors():
            tlog, _ = open_log(db, config)
            when = dt.datetime.fromisoformat(at) if at else None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            bundle = NameProver(tlog).prove(name, jurisdiction, when)
        typer.echo(json.dumps(bundle, indent=1, sort_keys=True))

    @ledger.command("verify-proof")
    def verify_proof(
        bundle: Annotated[str, typer.Argument(help="Proof bundle file, or - for stdin.")],
        key: Annotated[str, typer.Option("--key", help="The log's verifier key (vkey).")],
        log: Annotated[
            str | None,
            typer.Option(
                "--log",
                help="Also check that no binding order was left out, against the published"
                " log (https://host/log or a tiles directory).",
            ),
        ] = None,
        witness: WitnessOption = None,
        quorum: QuorumOption = None,
    ) -> None:
        """Check a proof bundle offline; exit 1 on any mismatch.

        With --witness, the bundle's checkpoint must also carry --quorum valid
        cosignatures by those witnesses (C2SP tlog-cosignature).
        """
        from clearwall.ledger.nameproof import verify_bundle
        from clearwall.ledger.signing import parse_vkey

        with errors():
            text = sys.stdin.read() if bundle == "-" else Path(bundle).read_text("utf-8")
            try:
                data = json.loads(text)
            except ValueError as exc:
                fail(f"proof bundle is not JSON: {exc}")
            verifier = parse_vkey(key)
            note = data.get("checkpoint") if isinstance(data, dict) else None
            witnessed = require_witnesses(str(note or ""), verifier, witness or [], quorum)
            entries = None
            if log is not None:
                from clearwall.ledger.remote import verified_entries

                entries = verified_entries(log, verifier)
            conclusion = verify_bundle(data, verifier, entries)
        who = conclusion["blocked_by"] or conclusion["allowed_by"]
        orders = f" (orders {', '.join(map(str, who))})" if who else ""
        typer.echo(
            f"ok: {data['name']} is {conclusion['decision']}ed for "
            f"{data['jurisdiction'] or 'clients of no jurisdiction'}{orders}{witnessed}"
        )

    @ledger.command("serve")
    def serve(
        web: Annotated[str, typer.Option("--web", help="IP:PORT to listen on.")] = "127.0.0.1:8080",
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Serve /log/ (checkpoint, tiles, proof API) until interrupted."""
        import uvicorn
        from fastapi import FastAPI

        from clearwall.ledger.http import log_router

        with errors():
            where = HostPort.parse(web, 8080)
            tlog, _ = open_log(db, config)
            tlog.sync()  # recover anything a crash left unpublished
            app = FastAPI(title="clearwall log", openapi_url=None, docs_url=None)
            app.include_router(log_router(tlog))
        uvicorn.run(app, host=where.host, port=where.port, log_level="warning")
