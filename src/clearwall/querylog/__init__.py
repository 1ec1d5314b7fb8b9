"""The privacy-preserving query log: records, truncation, the writer and the reader.

Off by default (``[logging] query_log``). When on, the DNS data plane hands each answer
to a ``Recorder`` (client address already truncated to a network prefix); a writer
thread batches the records into rotated SQLite segments bounded in size and age
(``SegmentStore``); the console and the export read them with ``QueryLogReader``.
See docs/querylog.md.
"""

from __future__ import annotations

from clearwall.querylog.reader import Filters, QueryLogReader
from clearwall.querylog.record import Entry, truncate
from clearwall.querylog.recorder import Recorder
from clearwall.querylog.store import SegmentStore

__all__ = ["Entry", "Filters", "QueryLogReader", "Recorder", "SegmentStore", "truncate"]
