"""The log's side of C2SP tlog-witness: get each new checkpoint cosigned, attach, retry, report.

``cosign`` runs inside ``TransparencyLog.sync`` (the log's file lock held, tiles already
written) between signing a checkpoint and publishing it: every configured witness is
asked at once (``POST <url>/add-checkpoint`` with the old size it holds and a
consistency proof from the published tiles), each answer is verified against the
witness's vkey, and the valid cosignature lines are attached to the note that is then
published at ``/log/checkpoint`` and stored. A witness that is down, slow or refuses
does not stop publication: the checkpoint goes out with the cosignatures it got, the
failure is recorded, and ``retry`` (run by ``clearwall serve``'s jobs every
``witness_retry`` seconds, and by every later sync) asks again and attaches late
cosignatures to the published note. A checkpoint is *witnessed* once ``witness_quorum``
witnesses have cosigned it; verifiers holding the same witness keys refuse it before
that.

What each witness last cosigned, and its last error, is kept in ``.witnesses.json``
beside the tiles, so a witness is asked with the right old size (a 409 answer corrects
a stale one) and the portal and ``/metrics`` can show who lags.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clearwall.config import LedgerConfig, WitnessEndpoint
from clearwall.errors import ClearwallError, VerificationError
from clearwall.ledger import proofs
from clearwall.ledger.checkpoint import Checkpoint, parse_checkpoint
from clearwall.ledger.cosignature import (
    VALID,
    CosignatureVerifier,
    check_cosignatures,
    parse_cosigner_vkey,
    split_signature,
)
from clearwall.ledger.logstore import LogStore
from clearwall.ledger.note import NoteSignature, split_note, with_signatures
from clearwall.ledger.signing import Verifier

if TYPE_CHECKING:  # httpx is imported when a witness is asked: every publish of a log
    import httpx  # without witnesses (a gateway's first compile) skips its 45 ms import

log = logging.getLogger("clearwall.witnessing")

STATE_FILE = ".witnesses.json"  # a dot file: never served as a tile


class PublishedFiles(Protocol):
    """Where the published checkpoint lives (``tiledir.TileDir``)."""

    root: Path

    def read_checkpoint(self) -> str | None:
        """The published note, if any."""
        ...

    def write_checkpoint(self, note: str) -> None:
        """Publish a note."""
        ...


class PublishingLog(Protocol):
    """What witnessing needs of ``log.TransparencyLog``."""

    @property
    def config(self) -> LedgerConfig:
        """The ledger section (witnesses, quorum, timeout)."""
        ...

    @property
    def dir(self) -> PublishedFiles:
        """The published files."""
        ...

    @property
    def verifier(self) -> Verifier:
        """The log's verifier key."""
        ...

    def reader(self, size: int) -> proofs.HashReader:
        """Hashes of the published tree of ``size``."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The log's writer lock (the one ``sync`` holds)."""
        ...

    @property
    def store(self) -> LogStore:
        """The log's store (a late cosignature is recorded there too)."""
        ...


@dataclass
class WitnessState:
    """What the log knows of one witness: its latest cosigned size and its last error."""

    size: int = 0  # the largest checkpoint size it is known to have cosigned
    cosigned_at: int = 0  # that cosignature's timestamp
    attempt_at: float = 0.0  # when it was last asked
    error: str = ""  # why the last request failed ("" when it succeeded)
    failures: int = 0  # failed requests in a row


def _state_path(tlog: PublishingLog) -> Path:
    return Path(tlog.dir.root) / STATE_FILE


def load_state(tlog: PublishingLog) -> dict[str, WitnessState]:
    """The state per witness vkey (missing or unreadable file: nothing known)."""
    try:
        raw = json.loads(_state_path(tlog).read_text(encoding="utf-8"))
        items = raw["witnesses"].items()
        return {str(k): WitnessState(**v) for k, v in items}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save_state(tlog: PublishingLog, state: dict[str, WitnessState]) -> None:
    path = _state_path(tlog)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {"witnesses": {k: vars(v) for k, v in state.items()}}
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


@dataclass(frozen=True)
class _Outcome:
    """One witness's answer: a verified cosignature, or why there is none."""

    witness: WitnessEndpoint
    line: NoteSignature | None = None
    size: int = 0  # the size the witness holds after the exchange, when known
    error: str = ""


def _ask(
    client: httpx.Client,
    witness: WitnessEndpoint,
    note: str,
    cp: Checkpoint,
    known: int,
    tlog: PublishingLog,
) -> _Outcome:
    """Ask one witness to cosign ``note`` (C2SP tlog-witness add-checkpoint)."""
    import httpx

    verifier = parse_cosigner_vkey(witness.vkey)
    old = known if known <= cp.size else 0
    for _ in range(3):  # at most two 409 corrections of the old size
        try:
            proof = proofs.consistency_proof(tlog.reader(cp.size), old, cp.size) if old else []
        except ClearwallError as exc:
            return _Outcome(witness, error=f"cannot prove consistency from size {old}: {exc}")
        body = f"old {old}\n" + "".join(f"{_b64(h)}\n" for h in proof) + "\n" + note
        url = f"{witness.url}/add-checkpoint"
        try:
            resp = client.post(url, content=body.encode("utf-8"))
        except httpx.HTTPError as exc:
            return _Outcome(witness, size=known, error=f"{url}: {type(exc).__name__}: {exc}")
        if resp.status_code == 200:
            line = _cosignature(resp.text, cp, verifier)
            if line is None:
                return _Outcome(
                    witness, error="answered 200 without a valid cosignature by its key"
                )
            return _Outcome(witness, line, cp.size)
        text = resp.text.strip()[:300]
        if resp.status_code == 409:
            try:
                held = int(text)
            except ValueError:
                return _Outcome(witness, error=f"HTTP 409 without a size: {text!r}")
            if held > cp.size:
                return _Outcome(
                    witness,
                    size=held,
                    error=f"it has cosigned size {held}, above this checkpoint's {cp.size}: "
                    "this log lost entries or showed it another tree",
                )
            if held == old:
                return _Outcome(witness, size=held, error=f"HTTP 409 for its own size {held}")
            old = held
            continue
        return _Outcome(witness, size=known, error=f"HTTP {resp.status_code}: {text}")
    return _Outcome(witness, size=old, error="the old size kept changing (409 three times)")


def _cosignature(
    answer: str, cp: Checkpoint, verifier: CosignatureVerifier
) -> NoteSignature | None:
    """The witness's valid cosignature line among the answer's lines (others ignored)."""
    try:
        _, sigs = split_note(cp.text() + "\n" + answer)
    except VerificationError:
        return None
    message = cp.text().encode("utf-8")
    for sig in sigs:
        if (sig.name, sig.key_id) == (verifier.name, verifier.key_id) and verifier.verify(
            message, sig.signature
        ):
            return sig
    return None


def _ask_all(
    tlog: PublishingLog,
    witnesses: Sequence[WitnessEndpoint],
    note: str,
    cp: Checkpoint,
    state: dict[str, WitnessState],
) -> list[_Outcome]:
    """Ask ``witnesses`` in parallel; each within the configured timeout."""
    if not witnesses:
        return []
    import httpx

    timeout = httpx.Timeout(tlog.config.witness_timeout)
    with (
        httpx.Client(timeout=timeout, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=len(witnesses)) as pool,
    ):
        futures = [
            pool.submit(_ask, client, w, note, cp, state.get(w.vkey, WitnessState()).size, tlog)
            for w in witnesses
        ]
        return [f.result() for f in futures]


def _record(state: dict[str, WitnessState], outcomes: Iterable[_Outcome]) -> None:
    now = time.time()
    for o in outcomes:
        s = state.setdefault(o.witness.vkey, WitnessState())
        s.attempt_at = now
        if o.line is not None:
            s.size, s.error, s.failures = o.size, "", 0
            s.cosigned_at = split_signature(o.line.signature)[0]
        else:
            s.error, s.failures = o.error, s.failures + 1
            if o.size:
                s.size = o.size
            log.warning("witness %s did not cosign: %s", o.witness.url, o.error)


def _verifiers(config: LedgerConfig) -> list[CosignatureVerifier]:
    return [parse_cosigner_vkey(w.vkey) for w in config.witnesses]


def _valid_lines(tlog: PublishingLog, note: str | None, text: str) -> dict[str, NoteSignature]:
    """Valid cosignatures (by vkey) already on ``note``, if it is the same checkpoint."""
    if note is None:
        return {}
    try:
        if split_note(note)[0] != text:
            return {}
        report = check_cosignatures(note, tlog.verifier, _verifiers(tlog.config), 0)
    except ClearwallError:
        return {}
    out: dict[str, NoteSignature] = {}
    _, sigs = split_note(note)
    for w, r in zip(tlog.config.witnesses, report.results, strict=True):
        if r.status == VALID:
            out[w.vkey] = next(s for s in sigs if s.line() == r.line)
    return out


def cosign(tlog: PublishingLog, note: str) -> str:
    """``note`` with the cosignatures of the configured witnesses (called by ``sync``).

    Runs with the log's lock held. Cosignatures already on the published note for the
    same tree head are kept; only the witnesses without one are asked.
    """
    witnesses = tlog.config.witnesses
    if not witnesses:
        return note
    text, _ = split_note(note)
    cp = parse_checkpoint(text)
    have = _valid_lines(tlog, tlog.dir.read_checkpoint(), text)
    ask = [w for w in witnesses if w.vkey not in have]
    state = load_state(tlog)
    outcomes = _ask_all(tlog, ask, note, cp, state)
    _record(state, outcomes)
    _save_state(tlog, state)
    lines = list(have.values()) + [o.line for o in outcomes if o.line is not None]
    _warn_quorum(tlog.config, cp, len(lines))
    return with_signatures(note, lines)


def _warn_quorum(config: LedgerConfig, cp: Checkpoint, got: int) -> None:
    if got < config.witness_quorum:
        log.warning(
            "checkpoint of size %d has %d of the %d witness cosignatures required: "
            "published unwitnessed, retrying",
            cp.size,
            got,
            config.witness_quorum,
        )


def retry(tlog: PublishingLog) -> int:
    """Ask the witnesses missing from the published checkpoint again; attach what comes.

    The requests run without the log's lock; the note is rewritten under it, and only if
    it still holds the same checkpoint (a newer sync asked the witnesses itself).
    Returns how many cosignatures were added.
    """
    witnesses = tlog.config.witnesses
    note = tlog.dir.read_checkpoint()
    if not witnesses or note is None:
        return 0
    text, _ = split_note(note)
    cp = parse_checkpoint(text)
    have = _valid_lines(tlog, note, text)
    ask = [w for w in witnesses if w.vkey not in have]
    if not ask:
        return 0
    outcomes = _ask_all(tlog, ask, note, cp, load_state(tlog))
    got = [o.line for o in outcomes if o.line is not None]
    with tlog.lock():
        state = load_state(tlog)  # re-read: a sync may have run meanwhile
        _record(state, outcomes)
        _save_state(tlog, state)
        current = tlog.dir.read_checkpoint()
        if not got or current is None or split_note(current)[0] != text:
            return 0
        cosigned = with_signatures(current, got)
        tlog.dir.write_checkpoint(cosigned)
        # The store's copy too: nodes without the key serve the note from there.
        tlog.store.replace_checkpoint_note(cp.size, cp.root, cosigned)
    if got:
        log.info("attached %d late witness cosignature(s) to checkpoint %d", len(got), cp.size)
    return len(got)


# -- status, for the portal and /metrics ------------------------------------------------


@dataclass(frozen=True)
class WitnessStatus:
    """One configured witness as the published checkpoint and the state file show it."""

    name: str
    vkey: str
    url: str
    cosigned: bool  # a valid cosignature is on the published checkpoint
    timestamp: int | None  # its time
    line: str  # the cosignature line
    size: int  # the largest size it is known to have cosigned
    lag: int  # published size minus that
    error: str
    failures: int
    attempt_at: float


@dataclass(frozen=True)
class WitnessingStatus:
    """The published checkpoint's witnessing: each witness, the quorum, whether it is met."""

    checkpoint: Checkpoint | None
    quorum: int
    witnesses: tuple[WitnessStatus, ...] = field(default_factory=tuple)

    @property
    def cosignatures(self) -> int:
        """Valid cosignatures on the published checkpoint."""
        return sum(1 for w in self.witnesses if w.cosigned)

    @property
    def witnessed(self) -> bool:
        """The published checkpoint has the quorum of cosignatures."""
        return self.checkpoint is not None and self.cosignatures >= self.quorum

    @property
    def lagging(self) -> list[WitnessStatus]:
        """The witnesses that have not cosigned the published checkpoint."""
        return [w for w in self.witnesses if not w.cosigned]


def status(tlog: PublishingLog) -> WitnessingStatus:
    """The witnessing status of the published checkpoint (reads two files, no network)."""
    config = tlog.config
    note = tlog.dir.read_checkpoint()
    cp: Checkpoint | None = None
    results: dict[str, tuple[bool, int | None, str]] = {}
    if note is not None:
        try:
            report = check_cosignatures(note, tlog.verifier, _verifiers(config), 0)
            cp = report.checkpoint
            for w, r in zip(config.witnesses, report.results, strict=True):
                results[w.vkey] = (r.status == VALID, r.timestamp, r.line)
        except ClearwallError:
            cp = None
    state = load_state(tlog)
    out = []
    for w in config.witnesses:
        ok, ts, line = results.get(w.vkey, (False, None, ""))
        s = state.get(w.vkey, WitnessState())
        size = max(s.size, cp.size if (ok and cp) else 0)
        out.append(
            WitnessStatus(
                name=w.vkey.split("+", 1)[0],
                vkey=w.vkey,
                url=w.url,
                cosigned=ok,
                timestamp=ts,
                line=line,
                size=size,
                lag=max(0, (cp.size if cp else 0) - size),
                error=s.error,
                failures=s.failures,
                attempt_at=s.attempt_at,
            )
        )
    return WitnessingStatus(cp, config.witness_quorum, tuple(out))


class WitnessMetrics:
    """A Prometheus collector: per-witness lag and cosignature state, and the quorum."""

    def __init__(self, tlog: PublishingLog) -> None:
        """Report on ``tlog``'s published checkpoint at each scrape."""
        self.tlog = tlog

    def describe(self) -> list[Any]:
        """No fixed description: families are built per scrape."""
        return []

    def collect(self) -> Iterator[Any]:
        """The gauges, from the published checkpoint and the state file."""
        from prometheus_client.core import GaugeMetricFamily

        st = status(self.tlog)
        if not st.witnesses:
            return
        size = st.checkpoint.size if st.checkpoint else 0
        yield GaugeMetricFamily(
            "clearwall_log_witness_cosignatures",
            "Valid witness cosignatures on the published checkpoint.",
            value=st.cosignatures,
        )
        yield GaugeMetricFamily(
            "clearwall_log_witness_quorum",
            "Witness cosignatures required ([ledger] witness_quorum).",
            value=st.quorum,
        )
        yield GaugeMetricFamily(
            "clearwall_log_witnessed",
            "1 when the published checkpoint has the quorum of cosignatures.",
            value=1 if st.witnessed else 0,
        )
        labels = ["witness"]
        up = GaugeMetricFamily(
            "clearwall_witness_cosigned",
            "1 when the witness has cosigned the published checkpoint.",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "clearwall_witness_lag_entries",
            f"Entries between the published checkpoint (size {size}) and the largest one "
            "the witness cosigned.",
            labels=labels,
        )
        cosigned = GaugeMetricFamily(
            "clearwall_witness_cosigned_size",
            "The largest checkpoint size the witness is known to have cosigned.",
            labels=labels,
        )
        failures = GaugeMetricFamily(
            "clearwall_witness_failures",
            "Failed requests to the witness in a row.",
            labels=labels,
        )
        for w in st.witnesses:
            up.add_metric([w.name], 1 if w.cosigned else 0)
            lag.add_metric([w.name], w.lag)
            cosigned.add_metric([w.name], w.size)
            failures.add_metric([w.name], w.failures)
        yield from (up, lag, cosigned, failures)
