"""Aggregations over a log: per syscall, per fd kind, per pid; and the fast counting path.

Counting is the hot path (logs of millions of lines), so `summarize_paths` does not build an
event per line: one regex recognises a complete call line and yields pid, name, the head of
the first argument's fd annotation and the result; the rows are tallied per
(pid, name, annotation head) and folded into the public tables at the end. Every other line
(unfinished/resumed halves, signals, the summary table, anything odd) goes through the full
reader in `stream.py`, so both paths count exactly the same things.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from strace_parsers.errors import StraceInputError, StraceUsageError
from strace_parsers.events import (
    GATHER_WRITES,
    WRITE_FAMILY,
    Event,
    SummaryRowEvent,
    SyscallEvent,
    TruncatedLineEvent,
    UnparsedLineEvent,
)
from strace_parsers.line import result_int
from strace_parsers.stream import StraceReader, expand_sources, open_log
from strace_parsers.values import MSG_IOVLEN_RE, classify_annotation, iov_sum

FD_KINDS = ("socket", "pipe", "file", "other")
MAX_UNPARSED_EXAMPLES = 10


@dataclass(slots=True)
class SyscallStats:
    """Tallies for one syscall (in one slice: all, one fd kind, one pid).

    calls: calls that returned (as strace -c counts); errors: of those, failed ones;
    bytes: returned bytes of successful write-family calls; seconds: summed `-T` time
    (timed_calls says how many calls carried one); unreturned: calls the process never
    came back from (`= ?`) or that the log cut off; requested_bytes / requested_calls:
    what gather writes (writev, sendmsg, ...) asked to write, summed over their iovecs
    where strace printed all of them (plain writes ask for what they pass); iov_count:
    iovecs passed to writev/sendmsg-style calls; size_histogram: successful write sizes
    by power-of-two bucket (key 2**k counts sizes in (2**(k-1), 2**k]; key 0 counts 0).
    """

    calls: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    timed_calls: int = 0
    unreturned: int = 0
    requested_bytes: int = 0
    requested_calls: int = 0
    iov_count: int = 0
    size_histogram: dict[int, int] = field(default_factory=dict)

    def merge(self, other: SyscallStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.timed_calls += other.timed_calls
        self.unreturned += other.unreturned
        self.requested_bytes += other.requested_bytes
        self.requested_calls += other.requested_calls
        self.iov_count += other.iov_count
        for k, v in other.size_histogram.items():
            self.size_histogram[k] = self.size_histogram.get(k, 0) + v

    def to_json(self) -> dict[str, Any]:
        """The contract's calls/errors/bytes/seconds plus the extra tallies.

        seconds is null when no call carried a `-T` duration: not measured, not zero.
        """
        return {
            "calls": self.calls,
            "errors": self.errors,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 9) if self.timed_calls else None,
            "timed_calls": self.timed_calls,
            "unreturned": self.unreturned,
            "requested_bytes": self.requested_bytes,
            "requested_calls": self.requested_calls,
            "iov_count": self.iov_count,
            "size_histogram": {str(k): v for k, v in sorted(self.size_histogram.items())},
        }


@dataclass(slots=True)
class Summary:
    """What `summarize_paths` found. `lines` counts every physical line read; each one is
    parsed, unparsed (`unparsed`, first few in `unparsed_examples`) or `truncated`."""

    files: list[str] = field(default_factory=list)
    lines: int = 0
    unparsed: int = 0
    truncated: int = 0
    orphan_resumed: int = 0
    unparsed_examples: list[dict[str, Any]] = field(default_factory=list)
    syscalls: dict[str, SyscallStats] = field(default_factory=dict)
    by_fd_kind: dict[str, dict[str, SyscallStats]] = field(default_factory=dict)
    by_pid: dict[int, dict[str, SyscallStats]] = field(default_factory=dict)
    strace_summary: dict[str, SummaryRowEvent] = field(default_factory=dict)
    annotated_calls: int = 0
    signals: int = 0
    exits: int = 0

    def write_calls(self) -> int:
        """Calls of the write family, all syscalls together."""
        return sum(s.calls for n, s in self.syscalls.items() if n in WRITE_FAMILY)

    def to_json(self) -> dict[str, Any]:
        """The `writeshape syscalls --json` document (contract keys plus extras)."""

        def table(t: dict[str, SyscallStats]) -> dict[str, Any]:
            return {n: s.to_json() for n, s in sorted(t.items())}

        out: dict[str, Any] = {
            "files": list(self.files),
            "lines": self.lines,
            "unparsed": self.unparsed,
            "unparsed_examples": list(self.unparsed_examples),
            "syscalls": table(self.syscalls),
            "truncated": self.truncated,
            "orphan_resumed": self.orphan_resumed,
            "by_fd_kind": {k: table(v) for k, v in sorted(self.by_fd_kind.items())},
            "by_pid": {str(k): table(v) for k, v in sorted(self.by_pid.items())},
        }
        if self.strace_summary:
            out["strace_summary"] = {
                n: {"calls": r.calls, "errors": r.errors, "seconds": r.seconds}
                for n, r in self.strace_summary.items()
            }
        return out


# -- the fast path -------------------------------------------------------------------

# One regex over a whole block of lines (re.M): each line is a gather write (writev,
# sendmsg: arguments captured, their iovecs need reading), another complete call (name, the
# first argument's fd and the head of its annotation, result, the text after the result),
# or anything else (last group). Only lines whose text after `) = ` has no quote qualify,
# so a `) = ` inside a string can never end a call. Timestamps and arguments of plain calls
# are not captured, so identical calls give identical tuples and a Counter counts them in C.
# The prefix (pid, timestamps) is chosen per file from its first lines: a regex for exactly
# that shape is much faster than one with every prefix optional; lines of another shape
# simply take the `other` branch and the full grammar.
_FD = r"(?:\d+(?:<([^:<>\n]*)|(?=[,)])))?"
# name and first argument up to the head of its fd annotation: `write(3</dev/null`
_NAME_FD = (
    r"(?!writev\(|sendm|pwritev|sendfile|splice\()[a-z][a-z0-9_]*\("
    r"(?:\d+(?:<[^:<>\n]*|(?=[,)])))?"
)
_RESULT = r".*\) += ((?:0x[0-9a-f]+|-?\d+|\?)[^\"\n]*)$"
# Few captured strings per line keep findall cheap: without timestamps the pid, name and
# fd head are one contiguous group; with them, pid and the rest are two.
_BLOCK_NO_TIME = r"^({pid}" + _NAME_FD + r")()" + _RESULT + r"|^(.*)$"
_KEY_RE = re.compile(r"(?:(\d+) +)?([a-z][a-z0-9_]*)\((?:\d+(?:<(.*))?)?", re.S)
_RET_RE = re.compile(r"(0x[0-9a-f]+|-?\d+|\?)(.*)", re.S)
# one gather-write line (writev, sendmsg) of the `other` branch, arguments captured
_VECTOR_TEMPLATE = (
    r"{prefix}(writev|sendmsg)\(" + _FD + r"(.*)\) += (-?\d+|\?)([^\"\n]*)"
)
_PIDS = (r"\d+ +", r"")
_ABS_TIME = r"(?:\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)"
_TIMES = ("", _ABS_TIME + " +", r" *\d+\.\d+ +", _ABS_TIME + r" \(\+ *\d+\.\d+\) +")
_SNIFF_LINES = 200
_ERRNO_RE = re.compile(r" ([A-Z][A-Z0-9_]*|E\?+|\d+) \(")
_DUR_RE = re.compile(r".* <(\d+\.\d+)>")
_BLOCK_CHARS = 1 << 22


@lru_cache(maxsize=16)
def _block_re(pid: str, ts: str) -> re.Pattern[str]:
    if not ts:
        return re.compile(_BLOCK_NO_TIME.replace("{pid}", pid), re.M)
    head = r"^(\d+) +" if pid else r"^()"
    return re.compile(head + ts + "(" + _NAME_FD + ")" + _RESULT + r"|^(.*)$", re.M)


@lru_cache(maxsize=16)
def _vector_re(pid: str, ts: str) -> re.Pattern[str]:
    prefix = (r"(\d+) +" if pid else "()") + ts
    return re.compile(_VECTOR_TEMPLATE.replace("{prefix}", prefix))


@lru_cache(maxsize=4096)
def _key_of(g1: str, g2: str) -> tuple[str | None, str, str | None]:
    """(pid, name, fd annotation head) from the captured `PID  name(FD<head` text."""
    m = _KEY_RE.fullmatch(f"{g1} {g2}" if g1 and g2 else g1 or g2)
    if m is None:  # cannot happen for text the block regex captured
        return None, g2 or g1, None
    return m.group(1), m.group(2), m.group(3)


def _sniff_prefix(block: str) -> tuple[str, str]:
    """The (pid, timestamp) prefix patterns most of the first lines of a log have."""
    sample = block[: 1 << 16].split("\n")[:_SNIFF_LINES]
    best, best_hits = (_PIDS[0], _TIMES[0]), -1
    for pid in _PIDS:
        for ts in _TIMES:
            rx = re.compile(pid + ts + r"(?:<\.\.\. |[a-z_]\w*\()")
            hits = sum(1 for line in sample if rx.match(line))
            if hits > best_hits:
                best, best_hits = (pid, ts), hits
    return best


@lru_cache(maxsize=8192)
def head_info(head: str | None) -> tuple[str | None, str | None]:
    """(fd kind, protocol) from the head of an annotation: `TCP`, `pipe`, `/dev/null`, ..."""
    if head is None:
        return None, None
    if head.startswith("/"):
        return "file", None
    if "\\" in head:
        kind, proto, _ = classify_annotation(head)
        return kind, proto
    if head == "socket":
        return "socket", None
    if head == "pipe":
        return "pipe", None
    if head[:1].isupper():
        return "socket", head
    return "other", None


def _head_of(ev: SyscallEvent) -> str | None:
    """A stand-in annotation head for an event, so events share the fast path's table."""
    kind = ev.fd_kind
    if kind is None:
        return None
    if kind == "socket":
        return ev.fd_proto or "socket"
    if kind == "file":
        return "/"
    if kind == "pipe":
        return "pipe"
    return "other"


# per (pid text, name, head) row: [calls, errors, bytes, seconds, timed, unreturned,
#  requested_bytes, requested_calls, iov_count, histogram list]
_Row = list[Any]


def _new_row() -> _Row:
    return [0, 0, 0, 0.0, 0, 0, 0, 0, 0, [0] * 65]


class _Tally:
    def __init__(self) -> None:
        self.rows: dict[tuple[str | None, str, str | None], _Row] = {}
        self.summary = Summary()

    def add_event(self, ev: Event, file: str) -> None:
        s = self.summary
        if isinstance(ev, SyscallEvent):
            pid = None if ev.pid is None else str(ev.pid)
            key = (pid, ev.name, _head_of(ev))
            row = self.rows.get(key)
            if row is None:
                row = self.rows[key] = _new_row()
            if ev.orphan:
                s.orphan_resumed += 1
            if not ev.returned:
                row[5] += 1
                return
            row[0] += 1
            if ev.errno is not None:
                row[1] += 1
            elif ev.name in WRITE_FAMILY and ev.retval is not None and ev.retval >= 0:
                row[2] += ev.retval
                row[9][min(64, (ev.retval - 1).bit_length()) if ev.retval else 0] += 1
            if ev.name in GATHER_WRITES:
                if ev.requested_bytes is not None:
                    row[6] += ev.requested_bytes
                    row[7] += 1
                if ev.iov_count is not None:
                    row[8] += ev.iov_count
            if ev.duration_s is not None:
                row[3] += ev.duration_s
                row[4] += 1
        elif isinstance(ev, UnparsedLineEvent):
            s.unparsed += 1
            if len(s.unparsed_examples) < MAX_UNPARSED_EXAMPLES:
                s.unparsed_examples.append({"file": file, "line": ev.line, "text": ev.text})
        elif isinstance(ev, TruncatedLineEvent):
            s.truncated += 1
        elif isinstance(ev, SummaryRowEvent):
            if not ev.is_total:
                s.strace_summary[ev.name] = ev
        elif type(ev).__name__ == "SignalEvent":
            s.signals += 1
        elif type(ev).__name__ == "ExitEvent":
            s.exits += 1

    def fold(self, pid: int | None, fd_kind: str) -> Summary:
        s = self.summary
        for (pid_s, name, head), row in self.rows.items():
            kind, _proto = head_info(head)
            if head is not None:
                s.annotated_calls += row[0]
            if fd_kind != "any" and kind != fd_kind:
                continue
            pid_i = int(pid_s) if pid_s is not None else 0
            if pid is not None and pid_i != pid:
                continue
            st = SyscallStats(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                              row[7], row[8],
                              {(1 << i if i else 0): c for i, c in enumerate(row[9]) if c})
            for table in (
                s.syscalls,
                s.by_fd_kind.setdefault(kind, {}) if kind is not None else None,
                s.by_pid.setdefault(pid_i, {}),
            ):
                if table is None:
                    continue
                if name in table:
                    table[name].merge(st)
                else:
                    table[name] = SyscallStats()
                    table[name].merge(st)
        return s


def _bucket(nbytes: int) -> int:
    """Histogram slot: 0 for 0 bytes, else k with 2**(k-1) < nbytes <= 2**k (capped)."""
    return min(64, (nbytes - 1).bit_length()) if nbytes > 0 else 0


def _row(rows: dict[tuple[str | None, str, str | None], _Row],
         key: tuple[str | None, str, str | None]) -> _Row:
    row = rows.get(key)
    if row is None:
        row = rows[key] = _new_row()
    return row


def _tally_call(row: _Row, name: str, ret: str, rest: str, count: int) -> None:
    """Add `count` identical complete calls (same name, result and tail) to a row."""
    if rest:
        dm = _DUR_RE.fullmatch(rest)
        if dm is not None:
            row[3] += float(dm.group(1)) * count
            row[4] += count
    if ret == "-1" or ret == "?":
        if _ERRNO_RE.match(rest) is not None:
            row[0] += count
            row[1] += count
            return
        if ret == "?" and not rest.startswith(" <unavailable>"):
            row[5] += count  # the process went away inside the call
            return
    row[0] += count
    if name in WRITE_FAMILY:
        nbytes = result_int(ret)
        if nbytes >= 0:
            row[2] += nbytes * count
            row[9][_bucket(nbytes)] += count


def _tally_vector(row: _Row, name: str, args: str, ret: str, rest: str, count: int) -> None:
    _tally_call(row, name, ret, rest, count)
    req = iov_sum(args)
    if req is not None:
        row[6] += req * count
        row[7] += count
    if name == "writev":
        cnt = args[args.rfind(", ") + 2 :]
        row[8] += (int(cnt) if cnt.isdigit() else 0) * count
    else:
        im = MSG_IOVLEN_RE.search(args)
        row[8] += (int(im.group(1)) if im is not None else 0) * count


def _iter_blocks(fh: Any) -> Iterable[tuple[str, bool]]:
    """Blocks of whole lines (without the final newline) and whether the file ended in one."""
    carry = ""
    while True:
        chunk = fh.read(_BLOCK_CHARS)
        if not chunk:
            if carry:
                yield carry, False
            return
        chunk = carry + chunk
        cut = chunk.rfind("\n")
        if cut < 0:
            carry = chunk
            continue
        carry = chunk[cut + 1 :]
        yield chunk[:cut], True


def _count_file(tally: _Tally, reader: StraceReader, fh: Any) -> None:
    """The hot path: classify a block of lines with one findall, count identical complete
    calls with a Counter, then read the other lines one by one, in order."""
    rows = tally.rows
    fixed_pid = None if reader.fixed_pid is None else str(reader.fixed_pid)
    base = 0
    fast = 0
    block_re: re.Pattern[str] | None = None
    vector_re: re.Pattern[str] | None = None
    for block, ends_with_newline in _iter_blocks(fh):
        if block_re is None or vector_re is None:
            pid_pat, ts_pat = _sniff_prefix(block)
            block_re, vector_re = _block_re(pid_pat, ts_pat), _vector_re(pid_pat, ts_pat)
        found = block_re.findall(block)
        counts = Counter(found)
        if len(found) != block.count("\n") + 1 or any(
            t[0] and t[2].endswith("...>") for t in counts
        ):
            # not the expected one tuple per line, or a tail like `<unfinished ...>` after
            # a `) = ` inside the arguments: read this block with the full grammar
            lines = block.split("\n")
            for i, text in enumerate(lines):
                last = i == len(lines) - 1 and not ends_with_newline
                _feed(tally, reader, text, base + i + 1, last)
            base += len(lines)
            continue
        others = 0
        for (g1, g2, result, _other), count in counts.items():
            if g1 or g2:
                pid, name, head = _key_of(g1, g2)
                rm = _RET_RE.fullmatch(result)
                if rm is None:  # cannot happen: the block regex matched this result
                    continue
                row = _row(rows, (fixed_pid or pid or None, name, head))
                _tally_call(row, name, rm.group(1), rm.group(2), count)
            else:
                others += count
        fast += len(found) - others
        if others:
            last_index = len(found) - 1
            vector = vector_re.fullmatch
            for i, t in enumerate(found):
                if t[0] or t[1]:
                    continue
                text = t[3]
                vm = vector(text)
                if vm is not None and not vm.group(6).endswith("...>"):
                    pid, vname, vhead, vargs, vret, vrest = vm.groups()
                    row = _row(rows, (fixed_pid or pid or None, vname, vhead))
                    _tally_vector(row, vname, vargs, vret, vrest, 1)
                    fast += 1
                    continue
                last = i == last_index and not ends_with_newline
                _feed(tally, reader, text, base + i + 1, last)
        base += len(found)
    for ev in reader.finish():
        tally.add_event(ev, reader.file)
    # the reader counted only the lines it saw; the fast ones were parsed too
    reader.lines += fast
    reader.parsed += fast


def _feed(tally: _Tally, reader: StraceReader, text: str, line_no: int, last: bool) -> None:
    for ev in reader.feed(text if last else text + "\n", line_no, last=last):
        tally.add_event(ev, reader.file)


def summarize_paths(
    paths: list[str] | list[os.PathLike[str]] | list[str | os.PathLike[str]],
    *,
    pid: int | None = None,
    fd_kind: str = "any",
    fd_filter: Callable[[SyscallEvent], bool] | None = None,
    strict: bool = False,
) -> Summary:
    """Count calls, errors, bytes and time per syscall (and per fd kind, per pid) over strace
    logs and `-ff` directories.

    pid / fd_kind ("socket", "pipe", "file", "other" or "any") keep only matching calls;
    fd_filter, if given, is called with each SyscallEvent (slower: events are built for
    every call) and keeps the calls for which it returns True.
    """
    if fd_kind != "any" and fd_kind not in FD_KINDS:
        raise StraceUsageError(f"fd kind {fd_kind!r}: use one of socket, pipe, file, other, any")
    tally = _Tally()
    sources = expand_sources(paths)
    for src in sources:
        tally.summary.files.append(src.path)
        reader = StraceReader(file=src.path, pid=src.pid, strict=strict)
        try:
            with open_log(src.path) as fh:
                if fd_filter is None:
                    _count_file(tally, reader, fh)
                else:
                    _count_events(tally, reader, fh, fd_filter)
        except OSError as exc:  # a read failing midway: EIO, a vanished mount, ...
            raise StraceInputError(f"{src.path}: cannot read ({exc.strerror or exc}); "
                                   "check the path and the device") from exc
        tally.summary.lines += reader.lines
    return tally.fold(pid, fd_kind)


def _count_events(tally: _Tally, reader: StraceReader, fh: Any,
                  fd_filter: Callable[[SyscallEvent], bool]) -> None:
    for n, line in enumerate(fh, 1):
        for ev in reader.feed(line, n, last=line[-1:] != "\n"):
            if not isinstance(ev, SyscallEvent) or fd_filter(ev):
                tally.add_event(ev, reader.file)
    for ev in reader.finish():
        if not isinstance(ev, SyscallEvent) or fd_filter(ev):
            tally.add_event(ev, reader.file)


def summarize_events(events: Iterable[Event], *, file: str = "<events>") -> Summary:
    """Aggregate events from `iter_events` (any source) into a Summary."""
    tally = _Tally()
    for ev in events:
        tally.add_event(ev, file)
    return tally.fold(None, "any")
