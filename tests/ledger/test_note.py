"""Signed notes, keys and checkpoints against the C2SP signed-note / Go sumdb/note vectors."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from clearwall.errors import LedgerError, VerificationError
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from clearwall.ledger.note import open_note, sign_note
from clearwall.ledger.signing import (
    create_key_file,
    generate_signer,
    load_signer,
    parse_skey,
    parse_vkey,
)

# The example key pair and signed note of Go's golang.org/x/mod/sumdb/note (also the
# example of the C2SP signed-note spec).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_example_keys_and_signature() -> None:
    signer = parse_skey(PETER_SKEY)
    assert signer.verifier.vkey == PETER_VKEY
    assert parse_vkey(PETER_VKEY) == signer.verifier
    assert sign_note(PETER_TEXT, [signer]) == PETER_TEXT + "\n" + PETER_SIG
    text, good = open_note(PETER_TEXT + "\n" + PETER_SIG, [parse_vkey(PETER_VKEY)])
    assert text == PETER_TEXT and good[0].name == "PeterNeumann"


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_vkeys(vkey: str) -> None:
    with pytest.raises((VerificationError, LedgerError)):
        parse_vkey(vkey)


def test_tampered_or_foreign_notes_fail() -> None:
    peter = parse_vkey(PETER_VKEY)
    with pytest.raises(VerificationError, match="invalid signature"):
        open_note(PETER_TEXT.replace("answer", "question") + "\n" + PETER_SIG, [peter])
    other = generate_signer("PeterNeumann", b"\x01" * 32).verifier
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(PETER_TEXT + "\n" + PETER_SIG, [other])
    for bad in (PETER_TEXT + PETER_SIG, PETER_TEXT + "\n" + PETER_SIG[:-1], "x\n\n— a b\n"):
        with pytest.raises(VerificationError):
            open_note(bad, [peter])


def test_unknown_signatures_are_ignored() -> None:
    a = generate_signer("a.example/log", b"\x02" * 32)
    b = generate_signer("witness.example", b"\x03" * 32)
    note = sign_note("a.example/log\n1\n" + base64.b64encode(b"\0" * 32).decode() + "\n", [a, b])
    _, good = open_note(note, [a.verifier])
    assert good == [a.verifier]


def test_checkpoint_roundtrip_and_errors() -> None:
    signer = generate_signer("clearwall.example/log", b"\x04" * 32)
    cp = Checkpoint("clearwall.example/log", 5, b"\xab" * 32)
    note = cp.sign(signer)
    assert note.startswith("clearwall.example/log\n5\nq6ur")
    assert open_checkpoint(note, signer.verifier) == cp
    other = generate_signer("other.example/log", b"\x04" * 32)
    with pytest.raises(VerificationError):
        open_checkpoint(
            Checkpoint("other.example/log", 5, b"\xab" * 32).sign(other), signer.verifier
        )
    for text in (
        "o\n05\n" + "q" * 43 + "=\n",
        "o\n5\nAAAA\n",
        "o\n5\n",
        "\n5\n" + "A" * 43 + "=\n",
        "o\n-1\nA\n",
    ):
        with pytest.raises(VerificationError):
            parse_checkpoint(text)


def test_key_file_mode_and_no_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.key"
    vkey = create_key_file(path, "clearwall.example/log")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signer(path).verifier.vkey == vkey == parse_vkey(vkey).vkey
    assert "PRIVATE" not in repr(load_signer(path))
    with pytest.raises(LedgerError, match="already exists"):
        create_key_file(path, "clearwall.example/log")
    os.chmod(path, 0o644)
    with pytest.raises(LedgerError, match="chmod 600"):
        load_signer(path)


def test_c2sp_checkpoint_example() -> None:
    """The example checkpoint body of the C2SP tlog-checkpoint spec."""
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(body)
    assert (cp.origin, cp.size, len(cp.root)) == ("example.com/behind-the-sofa", 20852163, 32)
    assert cp.text() == body
