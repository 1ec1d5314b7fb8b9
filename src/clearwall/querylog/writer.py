"""The query log's writer process: ``python -m clearwall.querylog.writer '<json>'``.

Started by a DNS process's ``Recorder`` when the query log is on. It reads shipments
(4-byte length, then ``marshal`` of ``(wall time, perf_counter time, groups)``) from
stdin, decodes the names, appends each shipment to its segment store in one
transaction, and answers each with a line ``<groups> <answers written> <answers failed>
<error>`` on stdout. It
exits when stdin closes. It never sees a full client address: the data plane truncated
them before shipping.
"""

from __future__ import annotations

import json
import marshal
import signal
import sys
from pathlib import Path
from typing import BinaryIO

from clearwall.querylog.record import Shipped, encode_orders, question_of
from clearwall.querylog.store import Row, SegmentStore

_MEMO_MAX = 65_536


class Decoder:
    """Turns shipped groups into rows; the question of each query is decoded once."""

    def __init__(self) -> None:
        self._questions: dict[bytes, tuple[str, int]] = {}

    def rows(self, wall: float, perf: float, groups: list[Shipped]) -> list[Row]:
        """Stored rows of one shipment (perf_counter seconds made wall-clock times).

        Groups that decode to the same record (the fast path keys a query with its EDNS
        options, the chain without them) are merged: counts and latencies added."""
        questions = self._questions
        if len(questions) > _MEMO_MAX:
            questions.clear()
        merged: dict[tuple[object, ...], list[float]] = {}
        for second, n, lsum, lmax, client, j, after_id, decision, rcode, orders, tcp in groups:
            question = questions.get(after_id)
            if question is None:
                question = questions[after_id] = question_of(after_id)
            key = (
                float(int(wall - (perf - second))),
                client,
                j,
                question[0],
                question[1],
                decision,
                encode_orders(tuple(orders)),
                rcode if rcode >= 0 else None,
                "tcp" if tcp else "udp",
            )
            cell = merged.get(key)
            if cell is None:
                merged[key] = [n, lsum, lmax]
            else:
                cell[0] += n
                cell[1] += lsum
                cell[2] = max(cell[2], lmax)
        return [
            (t, c, j, q, qt, d, o, r, lsum / n * 1000.0, tr, int(n), lmax * 1000.0)  # type: ignore[misc]
            for (t, c, j, q, qt, d, o, r, tr), (n, lsum, lmax) in merged.items()
        ]


def serve(spec: dict[str, object], stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Store every shipment read from ``stdin`` until it closes."""
    store = SegmentStore(
        Path(str(spec["dir"])),
        str(spec["writer"]),
        int(spec["max_bytes"]),  # type: ignore[call-overload]
        float(spec["max_age"]),  # type: ignore[arg-type]
    )
    decoder = Decoder()
    try:
        while True:
            head = stdin.read(4)
            if len(head) < 4:
                break
            payload = stdin.read(int.from_bytes(head, "big"))
            wall, perf, groups = marshal.loads(payload)
            answers = sum(g[1] for g in groups)
            try:
                store.append(decoder.rows(wall, perf, groups), wall)
            except Exception as exc:  # a full or missing disk: say so, keep reading
                store.close()
                reason = " ".join(str(exc).split())
                stdout.write(f"{len(groups)} 0 {answers} {reason}\n".encode())
            else:
                stdout.write(f"{len(groups)} {answers} 0\n".encode())
            stdout.flush()
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run until stdin closes; SIGINT/SIGTERM are the DNS process's to handle."""
    # A service stop signals the whole process group: the DNS process then ships its
    # last records and closes our stdin, which is when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = sys.argv[1:] if argv is None else argv
    serve(json.loads(args[0]), sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
