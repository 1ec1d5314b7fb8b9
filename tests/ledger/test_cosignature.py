"""C2SP tlog-cosignature v1: a vector derived by hand from the spec, and the quorum check.

The vector below was worked out from the text of c2sp.org/tlog-cosignature, not from
our code; the test then checks that our code produces exactly these bytes.

Derivation (seed 0x00 0x01 … 0x1f, cosigner name ``witness.example/w1``):

1. Public key (RFC 8032 section 5.1.5, Ed25519 key generation from the 32-byte seed):
   03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8.
2. Key ID ("Format": ``SHA-256(<name> || "\\n" || 0x04 || 32-byte public key)[:4]``):
   SHA-256(b"witness.example/w1" 0x0a 0x04 03a107bf…31b8) starts with e75f6532.
   (With the plain signed-note type 0x01 instead it would be 3218362d: the type byte
   keeps a witness key from ever being taken for a log key.)
3. vkey (signed-note "Verifier keys", type 0x04): ``witness.example/w1+e75f6532+`` then
   base64(0x04 || public key) = ``BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4``.
4. Signed message ("Ed25519 signed message"): the line ``cosignature/v1``, the line
   ``time 1679315147``, then the checkpoint body of the spec's example, final newline
   included, no signature lines.
5. ``timestamped_signature`` (RFC 8446 section 3: fields in order, integers big-endian):
   u64 1679315147 = 00 00 00 00 64 18 50 cb, then the 64-byte Ed25519 signature of (4).
6. Note signature line: ``— witness.example/w1 `` + base64(key ID || (5)), 76 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearwall.errors import LedgerError, VerificationError
from clearwall.ledger.checkpoint import Checkpoint
from clearwall.ledger.cosignature import (
    INVALID,
    MISSING,
    VALID,
    CosignatureVerifier,
    WitnessPolicy,
    check_cosignatures,
    generate_cosigner,
    parse_cosigner_skey,
    parse_cosigner_vkey,
    signed_message,
    split_signature,
)
from clearwall.ledger.note import NoteSignature, open_note, split_note, with_signatures
from clearwall.ledger.signing import generate_signer, parse_vkey

SEED = bytes(range(32))
NAME = "witness.example/w1"
PUBLIC = bytes.fromhex("03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
KEY_ID = 0xE75F6532
VKEY = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
TIME = 1679315147
BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
MESSAGE = (
    b"cosignature/v1\n"
    b"time 1679315147\n"
    b"example.com/behind-the-sofa\n"
    b"20852163\n"
    b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
LINE = (
    "\u2014 witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsV"
    "E8YiWV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ=="
)
# The cosignature line printed in tlog-cosignature's own example (its key is not given,
# so only its layout can be checked: 4-byte key ID, u64 time, 64-byte signature).
SPEC_LINE = (
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dl"
    "rDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def test_hand_derived_vector() -> None:
    # Steps 1-2, recomputed from the spec's formula with nothing but hashlib.
    assert hashlib.sha256(NAME.encode() + b"\n\x04" + PUBLIC).digest()[:4].hex() == "e75f6532"
    cosigner = generate_cosigner(NAME, SEED)
    assert cosigner.verifier.public_key == PUBLIC
    assert cosigner.key_id == KEY_ID
    assert cosigner.verifier.vkey == VKEY
    assert parse_cosigner_vkey(VKEY) == cosigner.verifier
    # Step 4: the signed message, byte for byte.
    assert signed_message(BODY, TIME) == MESSAGE
    # Steps 5-6: our line is the hand-made one.
    line = cosigner.cosign(BODY, TIME).line()
    assert line == LINE
    blob = base64.b64decode(LINE.split(" ")[2])
    assert len(blob) == 4 + 8 + 64
    assert blob[:4] == KEY_ID.to_bytes(4, "big")
    assert blob[4:12] == bytes.fromhex("00000000641850cb")
    # The signature is an RFC 8032 signature of MESSAGE (checked with cryptography alone).
    expected = Ed25519PrivateKey.from_private_bytes(SEED).sign(MESSAGE)
    assert blob[12:] == expected


def test_the_spec_example_line_parses() -> None:
    _, sigs = split_note(BODY + "\n" + SPEC_LINE + "\n")
    (sig,) = sigs
    assert sig.name == "witness.example.com/w1"
    assert sig.key_id == 0x8D66CF3F
    assert split_signature(sig.signature)[0] == TIME  # the spec's "time 1679315147"


def test_the_signature_covers_header_time_and_body() -> None:
    cosigner = generate_cosigner(NAME, SEED)
    v = cosigner.verifier
    sig = cosigner.cosign(BODY, TIME).signature
    assert v.verify(BODY.encode(), sig)
    # Another time in the timestamp field, another body, a truncated one: all refused.
    forged_time = struct.pack(">Q", TIME + 1) + sig[8:]
    assert not v.verify(BODY.encode(), forged_time)
    assert not v.verify(BODY.replace("20852163", "20852164").encode(), sig)
    assert not v.verify(BODY.encode(), sig[:-1])
    # A plain signed-note signature by the same key is not a cosignature.
    plain = Ed25519PrivateKey.from_private_bytes(SEED).sign(BODY.encode())
    assert not v.verify(BODY.encode(), struct.pack(">Q", TIME) + plain)


def test_timestamp_must_be_set_and_in_range() -> None:
    cosigner = generate_cosigner(NAME, SEED)
    with pytest.raises(LedgerError, match="non-zero timestamp"):
        cosigner.cosign(BODY, 0)
    with pytest.raises(VerificationError, match="out of range"):
        signed_message(BODY, 1 << 63)


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        # A log's (type 0x01) key is not a witness key, even with a matching id.
        (generate_signer(NAME, SEED).verifier.vkey, "not an Ed25519 cosigner key"),
        (VKEY.replace("e75f6532", "e75f6533"), "does not match"),
        ("witness.example/w1+e75f6532", "want name"),
        (VKEY[:-4], "29 bytes"),
        (VKEY[:-1] + "!", "not valid base64"),
    ],
)
def test_bad_witness_vkeys(vkey: str, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        parse_cosigner_vkey(vkey)


def test_key_file_text_round_trips_and_hides_the_seed() -> None:
    cosigner = generate_cosigner(NAME, SEED)
    assert parse_cosigner_skey(cosigner.skey) == cosigner
    assert base64.b64encode(SEED).decode() not in repr(cosigner)
    with pytest.raises(LedgerError, match="witness key"):
        parse_cosigner_skey(generate_signer(NAME, SEED).skey)  # a type 0x01 key file


ORIGIN = "clearwall.example/log"
LOG = generate_signer(ORIGIN, b"\x09" * 32)
W = [generate_cosigner(f"w{i}.example/witness", bytes([i]) * 32) for i in range(1, 4)]


def cosigned(cp: Checkpoint, signers: list[int], time: int = TIME) -> str:
    return with_signatures(cp.sign(LOG), [W[i].cosign(cp.text(), time) for i in signers])


CP = Checkpoint(ORIGIN, 5, hashlib.sha256(b"five").digest())
FORK = Checkpoint(ORIGIN, 5, hashlib.sha256(b"another five").digest())


@pytest.mark.parametrize(
    ("note", "quorum", "statuses", "ok"),
    [
        (cosigned(CP, [0, 1, 2]), 3, [VALID, VALID, VALID], True),
        (cosigned(CP, [0, 2]), 2, [VALID, MISSING, VALID], True),
        (cosigned(CP, [2]), 2, [MISSING, MISSING, VALID], False),
        (CP.sign(LOG), 0, [MISSING, MISSING, MISSING], True),
        # Cosignatures made for the fork, moved onto CP: they name the witness as invalid.
        (
            with_signatures(
                cosigned(CP, [2]), [W[0].cosign(FORK.text(), TIME), W[1].cosign(FORK.text(), TIME)]
            ),
            2,
            [INVALID, INVALID, VALID],
            False,
        ),
    ],
)
def test_quorum(note: str, quorum: int, statuses: list[str], ok: bool) -> None:
    policy = WitnessPolicy(tuple(w.verifier for w in W), quorum)
    report = policy.check(note, LOG.verifier)
    assert [r.status for r in report.results] == statuses
    assert report.ok is ok
    if not ok:
        with pytest.raises(VerificationError) as info:
            policy.require(note, LOG.verifier)
        for r in report.results:
            if r.status != VALID:
                assert r.witness.name in str(info.value)
        assert f"{quorum} required" in str(info.value)
    else:
        assert policy.require(note, LOG.verifier) == CP


def test_unknown_cosigners_and_future_times() -> None:
    stranger = generate_cosigner("stranger.example/w", b"\x77" * 32)
    note = with_signatures(cosigned(CP, [0]), [stranger.cosign(CP.text(), TIME)])
    report = check_cosignatures(note, LOG.verifier, [W[0].verifier], 1)
    assert report.ok and report.valid[0].timestamp == TIME
    # The log's own verification still passes: witnesses' lines are unknown keys to it.
    assert open_note(note, [LOG.verifier])[0] == CP.text()
    future = cosigned(CP, [0], time=TIME + 3600)
    assert not check_cosignatures(future, LOG.verifier, [W[0].verifier], 1, now=TIME).ok
    assert check_cosignatures(future, LOG.verifier, [W[0].verifier], 1, now=TIME + 3600).ok


def test_the_log_signature_is_still_required() -> None:
    other = generate_signer(ORIGIN, b"\x0a" * 32)
    note = with_signatures(CP.sign(other), [W[0].cosign(CP.text(), TIME)])
    with pytest.raises(VerificationError, match="no signature by a known key"):
        check_cosignatures(note, LOG.verifier, [W[0].verifier], 1)


@pytest.mark.parametrize("quorum", [-1, 4])
def test_impossible_quorum(quorum: int) -> None:
    with pytest.raises(VerificationError, match="quorum"):
        WitnessPolicy(tuple(w.verifier for w in W), quorum)


def test_with_signatures_replaces_a_keys_older_line() -> None:
    note = cosigned(CP, [0], time=TIME)
    newer = with_signatures(note, [W[0].cosign(CP.text(), TIME + 5)])
    _, sigs = split_note(newer)
    assert [s.name for s in sigs] == [ORIGIN, W[0].name]
    assert split_signature(sigs[1].signature)[0] == TIME + 5
    assert isinstance(sigs[1], NoteSignature)
    assert parse_vkey(LOG.verifier.vkey) == LOG.verifier
    assert isinstance(W[0].verifier, CosignatureVerifier)
