"""The tally every counting path writes into: rows keyed by (pid, name, fd kind, protocol).

The C counter, the pure-Python block scan and the event reader all add to the same rows,
so filters by pid, fd kind and protocol are applied once, when the rows are folded into a
Summary: a filter costs nothing per line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strace_parsers.events import (
    GATHER_WRITES,
    WRITE_FAMILY,
    Event,
    ExitEvent,
    SignalEvent,
    SummaryRowEvent,
    SyscallEvent,
    TruncatedLineEvent,
    UnparsedLineEvent,
)
from strace_parsers.summary import Summary, SyscallStats

MAX_EXAMPLES = 10
HIST_SLOTS = 66  # slot 0: 0 bytes; slot k+1: sizes in (2**(k-1), 2**k], k capped at 64

# pid (None: the line had none), syscall name, fd kind (None: no -y annotation), protocol
RowKey = tuple[int | None, str, str | None, str | None]
# [calls, errors, bytes, duration_ns, timed, unreturned, requested_bytes, requested_calls,
#  iov_count, orphans, {histogram slot: count}]
Row = list[Any]
CALLS, ERRORS, BYTES, DUR_NS, TIMED, UNRETURNED, REQ_BYTES, REQ_CALLS, IOVS, ORPHANS, HIST = (
    range(11)
)


def new_row() -> Row:
    return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {}]


def add_sizes(hist: dict[int, int], slot: int, count: int) -> None:
    hist[slot] = hist.get(slot, 0) + count


def hist_slot(nbytes: int) -> int:
    """Histogram slot of a write size: 0 for 0 bytes, k+1 for (2**(k-1), 2**k]."""
    if nbytes <= 0:
        return 0
    return min(64, (nbytes - 1).bit_length()) + 1


def slot_key(slot: int) -> int:
    """The size_histogram key of a slot: 0, then 1, 2, 4, 8, ..."""
    return 0 if slot == 0 else 1 << (slot - 1)


def duration_ns(seconds: float) -> int:
    """`-T` seconds as integer ns, summed exactly (strace prints at most 9 decimals)."""
    return round(seconds * 1e9)


class Tally:
    """Rows plus the file-level counts (unparsed, truncated, signals, the -C table)."""

    def __init__(self) -> None:
        self.rows: dict[RowKey, Row] = {}
        self.summary = Summary()
        self.blank = 0

    def row(self, key: RowKey) -> Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = new_row()
        return row

    def add_event(self, ev: Event, file: str) -> None:
        """Count one event of the reader (stream.StraceReader)."""
        if isinstance(ev, SyscallEvent):
            self.add_call(ev)
            return
        s = self.summary
        if isinstance(ev, UnparsedLineEvent):
            s.unparsed += 1
            if len(s.unparsed_examples) < MAX_EXAMPLES:
                s.unparsed_examples.append({"file": file, "line": ev.line, "text": ev.text})
        elif isinstance(ev, TruncatedLineEvent):
            s.truncated += 1
            if len(s.truncated_examples) < MAX_EXAMPLES:
                s.truncated_examples.append({"file": file, "line": ev.line, "text": ev.text})
        elif isinstance(ev, SummaryRowEvent):
            if not ev.is_total:
                s.strace_summary[ev.name] = ev
        elif isinstance(ev, SignalEvent):
            s.signals += 1
        elif isinstance(ev, ExitEvent):
            s.exits += 1

    def add_call(self, ev: SyscallEvent) -> None:
        row = self.row((ev.pid, ev.name, ev.fd_kind, ev.fd_proto))
        if ev.orphan:
            row[ORPHANS] += 1
        if not ev.returned:
            row[UNRETURNED] += 1
            return
        row[CALLS] += 1
        if ev.errno is not None:
            row[ERRORS] += 1
        elif ev.name in WRITE_FAMILY and ev.retval is not None and ev.retval >= 0:
            row[BYTES] += ev.retval
            add_sizes(row[HIST], hist_slot(ev.retval), 1)
        if ev.name in GATHER_WRITES:
            if ev.requested_bytes is not None:
                row[REQ_BYTES] += ev.requested_bytes
                row[REQ_CALLS] += 1
            if ev.iov_count is not None:
                row[IOVS] += ev.iov_count
        if ev.duration_s is not None:
            row[DUR_NS] += duration_ns(ev.duration_s)
            row[TIMED] += 1

    def add_native_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Fold the rows of a C counter (`_fastcount.Counter.rows()`) into these."""
        for pid, name, kind, proto, *counts, hist in rows:
            row = self.row((pid, name, kind, proto))
            for i, n in enumerate(counts):  # calls .. iov_count: the first nine columns
                row[i] += n
            row_hist = row[HIST]
            for slot, n in hist.items():
                row_hist[slot] = row_hist.get(slot, 0) + n

    def fold(self, pid: int | None, fd_kind: str,
             fd_proto: frozenset[str] | None) -> Summary:
        """The Summary of the rows that pass the filters. Rows are summed as integers
        (durations in ns) before any float is made, so every path gives the same figures."""
        s = self.summary
        sums: dict[tuple[str, Any, str], Row] = {}
        for (row_pid, name, kind, proto), row in self.rows.items():
            if kind is not None:
                s.annotated_calls += row[CALLS]
            if ((fd_kind != "any" and kind != fd_kind)
                    or (fd_proto is not None and proto not in fd_proto)
                    or (pid is not None and row_pid != pid)):
                continue
            s.orphan_resumed += row[ORPHANS]
            slices: list[tuple[str, Any]] = [("all", None), ("pid", row_pid or 0)]
            if kind is not None:
                slices.append(("kind", kind))
            for table, key in slices:
                _add_into(sums, (table, key, name), row)
        for (table, key, name), total in sums.items():
            st = _stats(total)
            if table == "all":
                s.syscalls[name] = st
            elif table == "pid":
                s.by_pid.setdefault(key, {})[name] = st
            else:
                s.by_fd_kind.setdefault(key, {})[name] = st
        return s

    def pids(self) -> set[int | None]:
        return {key[0] for key in self.rows}


def _stats(row: Row) -> SyscallStats:
    return SyscallStats(row[CALLS], row[ERRORS], row[BYTES], row[DUR_NS] / 1e9, row[TIMED],
                        row[UNRETURNED], row[REQ_BYTES], row[REQ_CALLS], row[IOVS],
                        {slot_key(i): c for i, c in sorted(row[HIST].items())})


def _add_into(sums: dict[tuple[str, Any, str], Row], key: tuple[str, Any, str], row: Row) -> None:
    total = sums.get(key)
    if total is None:
        sums[key] = [*row[:HIST], dict(row[HIST])]
        return
    for i in range(HIST):
        total[i] += row[i]
    total_hist = total[HIST]
    for slot, n in row[HIST].items():
        total_hist[slot] = total_hist.get(slot, 0) + n
