"""Counting over logs: per syscall, per fd kind, per pid, with filters.

Counting is the hot path (logs of millions of lines), so `summarize_paths` builds no event
per call line: the C counter (`_fastcount.c`, when built) or the pure-Python block scan
(`blockscan.py`) tallies call lines into rows keyed by (pid, name, fd kind, protocol), and
every other line goes through the full reader (`stream.py`), so all paths count exactly
the same things. Filters on pid, fd kind and protocol select rows at the end, at no cost
per line; only an `fd_filter` callable needs an event per call (the reader's speed).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterable
from typing import Literal

from strace_parsers.blockscan import count_file_python
from strace_parsers.errors import StraceInputError, StraceUsageError
from strace_parsers.events import Event, SyscallEvent
from strace_parsers.native import NATIVE_COUNTER, count_file_native
from strace_parsers.stream import StraceReader, expand_sources, open_log
from strace_parsers.summary import FD_KINDS, Summary, SyscallStats
from strace_parsers.tally import Tally

Implementation = Literal["auto", "c", "python"]
PathArg = str | os.PathLike[str]


def summarize_paths(
    paths: Iterable[PathArg],
    *,
    pid: int | None = None,
    fd_kind: str = "any",
    fd_proto: str | Iterable[str] | None = None,
    fd_filter: Callable[[SyscallEvent], bool] | None = None,
    strict: bool = False,
    implementation: Implementation = "auto",
) -> Summary:
    """Count calls, errors, bytes and time per syscall (and per fd kind, per pid) over strace
    logs and `-ff` directories.

    Filters, all applied to the counted rows (no cost per line):
    - pid: only this pid's calls;
    - fd_kind: "socket", "pipe", "file", "other" or "any" (the fd's kind from -y/-yy);
    - fd_proto: a protocol name or a set of them, as -yy prints them ("TCP", "TCPv6",
      "UDP", "UNIX-STREAM", ...): only calls on such sockets. The comparison runner's TCP
      writes: `summarize_paths([log], fd_proto={"TCP", "TCPv6"})`.
    fd_filter, if given, is called with each SyscallEvent and keeps the calls for which
    it returns True: any predicate, but an event is built per call, so it counts at the
    reader's speed (several times slower than the declarative filters).

    implementation: "c" (the C counter; StraceUsageError if it was not built), "python"
    (the pure-Python block scan), or "auto" (C when built). Both count exactly alike.

    strict: raise StraceParseError at the first line that is not strace output, and
    StraceInputError for what would otherwise only be a warning (see Summary.warnings).
    """
    protos = _protocols(fd_proto)
    if fd_kind != "any" and fd_kind not in FD_KINDS:
        raise StraceUsageError(f"fd kind {fd_kind!r}: use one of socket, pipe, file, other, any")
    native = _use_native(implementation) and fd_filter is None
    started = time.perf_counter()
    tally = Tally()
    for src in expand_sources(paths):
        tally.summary.files.append(src.path)
        reader = StraceReader(file=src.path, pid=src.pid, strict=strict)
        try:
            if fd_filter is not None:
                _count_events(tally, reader, fd_filter)
            elif native:
                with _open_binary(src.path) as fh:
                    count_file_native(tally, reader, fh)
            else:
                with open_log(src.path) as fh:
                    count_file_python(tally, reader, fh)
        except OSError as exc:  # a read failing midway: EIO, a vanished mount, ...
            raise StraceInputError(f"{src.path}: cannot read ({exc.strerror or exc}); "
                                   "check the path and the device") from exc
        tally.summary.lines += reader.lines
        tally.blank += reader.blank
    summary = tally.fold(pid, fd_kind, protos)
    summary.implementation = "c" if native else "python"
    summary.seconds = time.perf_counter() - started
    summary.warnings = input_warnings(tally, pid)
    if strict and summary.warnings:
        raise StraceInputError(f"{summary.warnings[0]} (drop --strict to count it anyway)")
    return summary


def summarize_events(events: Iterable[Event], *, file: str = "<events>") -> Summary:
    """Aggregate events from `iter_events` (any source) into a Summary."""
    tally = Tally()
    for ev in events:
        tally.add_event(ev, file)
    return tally.fold(None, "any", None)


def _protocols(fd_proto: str | Iterable[str] | None) -> frozenset[str] | None:
    if fd_proto is None:
        return None
    protos = frozenset([fd_proto] if isinstance(fd_proto, str) else fd_proto)
    if not protos or not all(isinstance(p, str) and p for p in protos):
        raise StraceUsageError(
            f"fd_proto {fd_proto!r}: give protocol names as strace -yy prints them, "
            "such as TCP, TCPv6, UDP, UNIX-STREAM"
        )
    return protos


def _use_native(implementation: str) -> bool:
    if implementation == "auto":
        return NATIVE_COUNTER
    if implementation == "python":
        return False
    if implementation == "c":
        if not NATIVE_COUNTER:
            raise StraceUsageError(
                "the C counter (strace_parsers._fastcount) is not built: install with a C "
                "compiler and Python headers, or use implementation='python'"
            )
        return True
    raise StraceUsageError(f"implementation {implementation!r}: use auto, c or python")


def _open_binary(path: str) -> io.BufferedReader:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise StraceInputError(f"{path}: cannot read ({exc.strerror}); check the path "
                               "and permissions") from exc


def _count_events(tally: Tally, reader: StraceReader,
                  fd_filter: Callable[[SyscallEvent], bool]) -> None:
    with open_log(reader.file) as fh:
        for n, line in enumerate(fh, 1):
            for ev in reader.feed(line, n, last=line[-1:] != "\n"):
                if not isinstance(ev, SyscallEvent) or fd_filter(ev):
                    tally.add_event(ev, reader.file)
    for ev in reader.finish():
        if not isinstance(ev, SyscallEvent) or fd_filter(ev):
            tally.add_event(ev, reader.file)


def input_warnings(tally: Tally, pid: int | None) -> list[str]:
    """One line per reason not to trust the counts: nothing to count, no strace output, a
    last line cut short, a pid filter that matched no call."""
    s = tally.summary
    label = s.files[0] if len(s.files) == 1 else f"{len(s.files)} files"
    if s.lines == 0:
        return [f"{label}: empty: no strace output to count"]
    if s.lines - s.unparsed - s.truncated - tally.blank == 0:
        shown = (s.unparsed_examples or s.truncated_examples or [{"text": ""}])[0]["text"]
        return [f"{label}: no strace output in its {s.lines} line(s) (first: "
                f"{shown[:60]!r}); pass a log written by strace -o"]
    out = []
    if s.truncated_examples:
        first = s.truncated_examples[0]
        where = f"{first['file']}:{first['line']}"
        if s.truncated == 1:
            out.append(f"{where}: the last line is cut short (was strace killed?) and not "
                       f"counted: {first['text'][:60]!r}")
        else:
            out.append(f"{s.truncated} files end in a line cut short (first: {where}); "
                       "those lines are not counted")
    if pid is not None and pid not in (pids := tally.pids()):
        known = sorted(p for p in pids if p is not None)
        if not known:
            out.append(f"pid {pid} matched no call: no line of {label} carries a pid "
                       "(record with strace -f, or pass the -ff directory)")
        else:
            shown_pids = ", ".join(map(str, known[:8])) + (", ..." if len(known) > 8 else "")
            out.append(f"pid {pid} matched no call in {label}; its pids: {shown_pids}")
    return out


__all__ = ["FD_KINDS", "Implementation", "Summary", "SyscallStats", "input_warnings",
           "summarize_events", "summarize_paths"]
