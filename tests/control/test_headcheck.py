"""The published checkpoint's checker child: it verifies as strictly as the log does, and
anything wrong with it, or with the child, means nothing saved is reused."""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path

import pytest
from tests.control.test_policy_source import Published, _add, _restart, _service

from clearwall.config import LedgerConfig
from clearwall.control import headcheck
from clearwall.control.headcheck import HeadCheck, read_head
from clearwall.errors import SnapshotError
from clearwall.layout import resolve_ledger
from clearwall.ledger.checkpoint import Checkpoint
from clearwall.ledger.signing import generate_signer


def _saved(store: str, snaps: Path) -> Path:
    """A store with a rule, compiled once and stopped cleanly: a snapshot to reuse."""
    from clearwall.control.policy_source import PolicySource

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    service.store.dispose()
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    return saved


def _start(
    store: str, snaps: Path, check: HeadCheck | None, ledger: LedgerConfig | None = None
) -> tuple[Path, bool]:
    """A new source's start with ``check``: the policy it starts with, whether it compiled."""
    return _restart(store, snaps, "", check, ledger)


def test_a_verified_checkpoint_is_reused_through_the_child(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The child answers the size and root the log's own reader finds; a start reuses the
    saved snapshot with it, and it answers that nothing was published as such."""
    snaps = tmp_path / "snaps"
    saved = _saved(store, snaps)
    head = HeadCheck.start(store, None).result()
    assert head is not None and head == read_head(store, None) and head.size == 2
    with caplog.at_level(logging.INFO, logger="clearwall.control"):
        path, compiled = _start(store, snaps, HeadCheck.start(store, None))
    assert path == saved and not compiled
    assert "reusing the saved snapshot" in caplog.text
    tiles = resolve_ledger(LedgerConfig(), store).tiles_path()
    (tiles / "checkpoint").unlink()
    assert HeadCheck.start(store, None).result() is None


def _other_key_note(note: str) -> str:
    """The same checkpoint body, signed by another key of the same name."""
    body = note.split("\n\n")[0] + "\n"
    lines = body.splitlines()
    cp = Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2]))
    return cp.sign(generate_signer(lines[0]))


@pytest.mark.parametrize(
    ("how", "why", "start_fails"),
    [
        ("a tampered signature", "the note was altered or signed by another key", False),
        ("another key's signature", "note has no signature by a known key", False),
        ("a missing key file", "not found (run `clearwall init`)", True),
        # The compile still publishes: the checkpoint verifies with the key file, and
        # only a sync (nothing new to sign here) compares it with the vkey.
        ("a vkey that is not the key file's", "one log has one signer", False),
        ("another origin", "origin 'clearwall.example/log' is not 'other.example/log'", True),
    ],
)
def test_a_checkpoint_the_child_cannot_verify_reuses_nothing(
    how: str,
    why: str,
    start_fails: bool,
    store: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same key rules as the log's reader: a forged checkpoint, a missing key file, a
    ``[ledger] vkey`` that names another key than the key file's, another origin; the
    child says why, the start logs it and reuses nothing (it compiles, which publishes
    the log again, or fails where the log cannot be published either)."""
    snaps = tmp_path / "snaps"
    saved = _saved(store, snaps)
    ledger = resolve_ledger(LedgerConfig(), store)
    checkpoint = ledger.tiles_path() / "checkpoint"
    config: LedgerConfig | None = None
    if how == "a tampered signature":
        note = checkpoint.read_text()
        sig = note.rstrip("\n").rsplit(" ", 1)[1]
        flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        checkpoint.write_text(note.replace(sig, flipped))
    elif how == "another key's signature":
        checkpoint.write_text(_other_key_note(checkpoint.read_text()))
    elif how == "a missing key file":
        ledger.key_path().unlink()
    elif how == "a vkey that is not the key file's":
        config = LedgerConfig(vkey=generate_signer(LedgerConfig().origin).verifier.vkey)
    else:
        config = LedgerConfig(origin="other.example/log")
    with caplog.at_level(logging.INFO, logger="clearwall.control"):
        assert HeadCheck.start(store, config).result() is None
        assert "the published checkpoint cannot be read (" in caplog.text
        assert why in caplog.text and "no saved snapshot is reused" in caplog.text
        caplog.clear()
        if start_fails:
            with pytest.raises(SnapshotError, match="the log cannot be published"):
                _start(store, snaps, HeadCheck.start(store, config), config)
            assert "reusing the saved snapshot" not in caplog.text
            return
        path, compiled = _start(store, snaps, HeadCheck.start(store, config), config)
    assert compiled and path != saved
    assert "reusing the saved snapshot" not in caplog.text
    assert read_head(store, None) is not None  # the compile published the log again


def test_a_node_that_does_not_sign_verifies_with_its_vkey(store: str, tmp_path: Path) -> None:
    """No key file, ``[ledger] vkey`` the signer's: the child verifies with the vkey, and
    the saved snapshot is reused."""
    snaps = tmp_path / "snaps"
    saved = _saved(store, snaps)
    ledger = resolve_ledger(LedgerConfig(), store)
    from clearwall.ledger.signing import load_signer

    vkey = load_signer(ledger.key_path()).verifier.vkey
    ledger.key_path().rename(tmp_path / "elsewhere.key")  # this node holds no key
    config = LedgerConfig(vkey=vkey)
    head = HeadCheck.start(store, config).result()
    assert head is not None and head.size == 2
    path, compiled = _start(store, snaps, HeadCheck.start(store, config), config)
    assert path == saved and not compiled


def _raise(_request: object) -> object:
    raise RuntimeError("it broke")


def _sleep(_request: object) -> object:
    time.sleep(60)
    return ["none"]


CHILDREN = {
    "raises": (_raise, "the checker exited with status 1: RuntimeError: it broke"),
    "exits non-zero": (lambda r: os._exit(3), "the checker exited with status 3"),
    "is killed": (lambda r: os.kill(os.getpid(), 9), "the checker was killed by signal 9"),
    "answers garbage": (lambda r: "hello", "the checker answered b'\"hello\"\\n', not a"),
    "answers a bad head": (lambda r: ["head", -1, "00"], "not a checkpoint"),
    "answers a bad root": (lambda r: ["head", 2, "z" * 64], "not a checkpoint"),
    "hangs": (_sleep, "the checker gave no answer in 1s"),
}


@pytest.mark.parametrize("what", list(CHILDREN))
def test_a_failing_child_means_a_compile_logged(
    what: str, store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever goes wrong with the child is an unverifiable checkpoint: a warning saying
    what, nothing reused, the policy compiled, and no child left behind."""
    run, message = CHILDREN[what]
    snaps = tmp_path / "snaps"
    saved = _saved(store, snaps)
    # One second for its answer, not the default ten: a test's time (none of the others
    # comes near it).
    check = HeadCheck.start(store, None, timeout=1.0, run=run)
    [(pid, _fd)] = [check._child] if check._child else []
    with caplog.at_level(logging.INFO, logger="clearwall.control"):
        path, compiled = _start(store, snaps, check)
    assert compiled and path != saved
    assert "reusing the saved snapshot" not in caplog.text
    assert "the published checkpoint could not be checked (" in caplog.text
    assert message in caplog.text and "no saved snapshot is reused" in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped


def test_the_child_answers_as_the_logs_reader_and_is_reaped(store: str, tmp_path: Path) -> None:
    """The answer is what ``ledger.published`` reads in this process; a check whose
    answer is never asked for is stopped by ``close``."""
    _saved(store, tmp_path / "snaps")
    head = read_head(store, None)
    assert head is not None
    assert headcheck.answer(headcheck.request(store, None)) == ["head", 2, head.root]
    check = HeadCheck.start(store, None, run=_sleep)
    assert check._child is not None
    pid = check._child[0]
    check.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
