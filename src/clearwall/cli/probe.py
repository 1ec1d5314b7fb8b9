"""The ``probe`` and ``probe-helper`` commands: audit a network, or serve as its control."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clearwall.errors import ProbeError
from clearwall.ledger.cosignature import WitnessPolicy
from clearwall.probe.dnsmeasure import DNSServer, measure_dns, parse_server, system_resolver
from clearwall.probe.inputs import InputProblem, Target, load_targets, parse_target
from clearwall.probe.runner import (
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    ProbeResult,
    ProbeSettings,
    ProofSource,
    run_probe,
)


def _targets(source: str | None, url: str | None) -> tuple[list[Target], list[InputProblem]]:
    if url:
        return [parse_target(url)], []
    if source is None:
        raise ProbeError("give an input file, a URL, or --url")
    path = Path(source)
    if path.exists():
        return load_targets(path)
    if "://" in source or ("." in source and "/" not in source.split("://")[-1].split("/")[0]):
        return [parse_target(source)], []
    raise ProbeError(f"input {source} is neither a file nor a URL")


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ProbeError(f"--listen wants IP:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def register(app: typer.Typer) -> None:
    """Add ``probe`` and ``probe-helper`` to the root command."""

    @app.command("probe")
    def probe(
        source: Annotated[
            str | None, typer.Argument(help="Citizen Lab CSV, plain list file, or one URL.")
        ] = None,
        url: Annotated[str | None, typer.Option("--url", help="Probe this one URL.")] = None,
        resolver: Annotated[
            str | None,
            typer.Option(
                help=(
                    "The network's resolver: [udp|tcp|tls://]IP[:PORT][#name] or a DoH URL "
                    "https://host/dns-query (encrypted ones verified, --ca-file applies); "
                    "default: the system's."
                )
            ),
        ] = None,
        control: Annotated[
            str | None,
            typer.Option(
                help=(
                    "A trusted resolver for comparison; plain IP means TCP (tls:// for DoT, "
                    "https:// for DoH)."
                )
            ),
        ] = None,
        control_helper: Annotated[
            str | None,
            typer.Option("--control-helper", help="Test helper URL (clearwall probe-helper)."),
        ] = None,
        log: Annotated[
            str | None, typer.Option(help="clearwall log/portal base URL to reconcile against.")
        ] = None,
        key: Annotated[
            str | None,
            typer.Option(help="The log's verifier key (vkey text or a file holding it)."),
        ] = None,
        jurisdiction: Annotated[
            str, typer.Option(help="Jurisdiction code of the network under test.")
        ] = "",
        witness: Annotated[
            list[str] | None,
            typer.Option(
                "--witness",
                help="A witness's verifier key (type 0x04), optionally followed by a space and"
                " its URL; the log's checkpoints must carry --quorum of their cosignatures.",
                show_default=False,
            ),
        ] = None,
        quorum: Annotated[
            int | None,
            typer.Option(
                "--quorum",
                help="Valid cosignatures required from the --witness keys (default: all).",
                show_default=False,
            ),
        ] = None,
        timeout: Annotated[float, typer.Option(help="Seconds per network step.")] = DEFAULT_TIMEOUT,
        concurrency: Annotated[
            int, typer.Option(help="Targets measured at once.")
        ] = DEFAULT_CONCURRENCY,
        propagation_delay: Annotated[
            float, typer.Option(help="Seconds a network may take to apply an order's start or end.")
        ] = 300.0,
        ca_file: Annotated[
            str | None, typer.Option("--ca-file", help="Trust only these CA certificates (PEM).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="Write JSON lines here ('-' for stdout).")
        ] = None,
        html: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ) -> None:
        """Measure what the network blocks and reconcile it with the published log."""
        console = Console(stderr=True)
        targets, problems = _targets(source, url)
        for problem in problems:
            console.print(f"[yellow]skipped line {problem.line}: {problem.reason}[/yellow]")
        if not targets:
            raise ProbeError("no usable targets")
        if timeout <= 0 or concurrency < 1:
            raise ProbeError("--timeout must be positive and --concurrency at least 1")
        settings = ProbeSettings(
            resolver=_trusting(parse_server(resolver) if resolver else system_resolver(), ca_file),
            control=_trusting(parse_server(control, default_transport="tcp"), ca_file)
            if control
            else None,
            helper_url=control_helper,
            jurisdiction=jurisdiction,
            timeout=timeout,
            concurrency=concurrency,
            ca_file=ca_file,
            propagation_delay=dt.timedelta(seconds=propagation_delay),
        )
        if settings.control is None:
            console.print("[yellow]no --control resolver: DNS answers are not compared[/yellow]")
        if control_helper is None:
            console.print(
                "[yellow]no --control-helper: outages cannot be told from TCP/TLS/HTTP "
                "blocking (reported as undetermined)[/yellow]"
            )
        from clearwall.errors import ClearwallError
        from clearwall.ledger.cosignature import policy_from_args

        try:
            policy = policy_from_args(witness or [], quorum)
        except ClearwallError as exc:
            raise ProbeError(str(exc)) from exc
        if policy[0] is not None and not log:
            raise ProbeError("--witness needs --log: cosignatures are checked on its checkpoints")
        results = asyncio.run(
            _run(targets, settings, log, key, jurisdiction, console, progress, policy)
        )
        context = {
            "resolver": str(settings.resolver),
            "control": str(settings.control or "none"),
            "test helper": control_helper or "none",
            "log": log or "none",
            "jurisdiction": jurisdiction or "none",
            "finished": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }
        from clearwall.probe.report import html_report, print_summary, write_jsonl

        if out is not None:
            if str(out) == "-":
                write_jsonl(results, sys.stdout, jurisdiction=jurisdiction, log_url=log or "")
            else:
                with out.open("w", encoding="utf-8") as handle:
                    write_jsonl(results, handle, jurisdiction=jurisdiction, log_url=log or "")
        if html is not None:
            html.write_text(html_report(results, problems, context=context), encoding="utf-8")
        print_summary(results, problems, console)

    @app.command("probe-helper")
    def probe_helper(
        listen: Annotated[
            str, typer.Option(help="IP:PORT to serve the helper on.")
        ] = "127.0.0.1:8090",
        resolver: Annotated[
            str | None, typer.Option(help="Resolver the helper uses; default: the system's.")
        ] = None,
        timeout: Annotated[float, typer.Option(help="Seconds per network step.")] = DEFAULT_TIMEOUT,
        ca_file: Annotated[
            str | None, typer.Option("--ca-file", help="Trust only these CA certificates (PEM).")
        ] = None,
        allow_private: Annotated[
            bool,
            typer.Option(
                "--allow-private",
                help="Also connect to private, loopback and reserved addresses (test networks).",
            ),
        ] = False,
    ) -> None:
        """Serve the probe's test helper: measure targets from this vantage point on request."""
        from clearwall.probe.helper import HelperServer, HelperSettings

        host, port = _listen(listen)
        settings = HelperSettings(
            resolver=_trusting(parse_server(resolver) if resolver else system_resolver(), ca_file),
            timeout=timeout,
            ca_file=ca_file,
            allow_private=allow_private,
        )

        async def serve() -> None:
            """Start the helper and serve until interrupted."""
            server = HelperServer(settings)
            bound = await server.start(host, port)
            typer.echo(f"probe-helper listening on {bound[0]}:{bound[1]}", err=True)
            await server.serve_forever()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())


async def _run(
    targets: list[Target],
    settings: ProbeSettings,
    log: str | None,
    key: str | None,
    jurisdiction: str,
    console: Console,
    show_progress: bool,
    policy: tuple[WitnessPolicy | None, dict[str, str]] = (None, {}),
) -> list[ProbeResult]:
    proofs: ProofSource | None = None
    closers = []
    # A resolver that does not answer at all would make every target look tampered with.
    first = next((t.name for t in targets if not t.is_ip), None)
    if first is not None:
        check = await measure_dns(first, settings.resolver, timeout=settings.timeout)
        if check.rcode is None:
            raise ProbeError(f"resolver {settings.resolver} does not answer: {check.failure}")
        if settings.control is not None:
            check = await measure_dns(first, settings.control, timeout=settings.timeout)
            if check.rcode is None:
                console.print(
                    f"[yellow]control resolver {settings.control} does not answer "
                    f"({check.failure}): DNS comparisons will be missing[/yellow]"
                )
    if log:
        if not key:
            raise ProbeError(
                "--log needs --key (the log's verifier key): proofs are checked, not trusted"
            )
        if not jurisdiction:
            raise ProbeError("--log needs --jurisdiction: orders are scoped to one")
        from clearwall.probe.logclient import LogProofs, load_vkey

        client = LogProofs(
            log,
            load_vkey(key),
            jurisdiction,
            timeout=settings.timeout,
            policy=policy[0],
            witness_urls=policy[1],
        )
        await client.check()
        proofs = client
        closers.append(client.aclose)
    if settings.helper_url:
        from clearwall.probe.helper import HelperClient

        probe_client = HelperClient(settings.helper_url, timeout=settings.timeout)
        try:
            await probe_client.check()
        finally:
            await probe_client.aclose()
    with Progress(
        TextColumn("probing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=True,
    ) as bar:
        task = bar.add_task("probe", total=len(targets))
        try:
            return await run_probe(
                targets, settings, proofs=proofs, on_result=lambda _r: bar.advance(task)
            )
        finally:
            for close in closers:
                await close()


def _trusting(server: DNSServer, ca_file: str | None) -> DNSServer:
    """``server`` verified against ``--ca-file`` too when it is encrypted (DoT, DoH)."""
    if ca_file and server.transport in ("tls", "https"):
        return dataclasses.replace(server, ca_file=ca_file)
    return server
