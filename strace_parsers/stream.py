"""Streaming reader: lines in, typed events out, in constant memory.

It joins `<unfinished ...>` starts with their `<... resumed>` ends per pid (other pids'
lines may come between), keeps the summary table apart, mends trace lines that strace
split with its own `strace: Process N attached` message (trace and messages both on
stderr), and accounts for every line: parsed, unparsed (with file, line number, text) or
the truncated last line of a killed strace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from strace_parsers.errors import StraceInputError, StraceParseError
from strace_parsers.events import (
    WRITE_FAMILY,
    Event,
    SyscallEvent,
    TruncatedLineEvent,
    UnparsedLineEvent,
)
from strace_parsers.line import CallPart, parse_line, split_injected_message
from strace_parsers.summary_table import SummaryTableParser
from strace_parsers.values import (
    classify_annotation,
    parse_fd,
    sendmmsg_bytes,
    target_fd_text,
    write_request,
)

# Syscalls whose first argument is a file descriptor even when strace did not annotate it
# (without -y a bare number could also be a pid, as in kill(1234, SIGTERM)).
FD_FIRST = frozenset(
    {
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
        "preadv2", "pwritev2", "send", "sendto", "sendmsg", "sendmmsg", "recv", "recvfrom",
        "recvmsg", "recvmmsg", "close", "fstat", "newfstatat", "fcntl", "ioctl", "lseek",
        "fsync", "fdatasync", "shutdown", "getsockopt", "setsockopt", "getsockname",
        "getpeername", "bind", "listen", "connect", "accept", "accept4", "sendfile",
        "sendfile64", "epoll_ctl", "epoll_wait", "epoll_pwait", "getdents64", "ftruncate",
        "fchmod", "fchown", "flock", "fstatfs", "dup", "dup2", "dup3", "splice", "tee",
    }
)


def make_syscall_event(part: CallPart, args: str, *, resumed: bool = False,
                       orphan: bool = False, returned: bool | None = None) -> SyscallEvent:
    """Build a SyscallEvent from a (joined) call, deriving fd and write-request fields."""
    name = part.name
    ev = SyscallEvent(
        part.pid, part.time_s, name, args, part.retval, part.errno, part.duration_s,
        part.ret_text, part.returned if returned is None else returned, resumed, orphan,
    )
    fd_text = target_fd_text(name, args) if name == "splice" else args
    if fd_text[:1].isdigit() or fd_text[:1] == "-":
        info = parse_fd(fd_text)
        if info is not None and (info.kind is not None or name in FD_FIRST):
            ev.fd, ev.fd_kind, ev.fd_proto, ev.endpoint = (
                info.fd, info.kind, info.proto, info.endpoint,
            )
    if name in WRITE_FAMILY:
        ev.requested_bytes, ev.iov_count = write_request(name, args)
        if name == "sendmmsg" and ev.retval is not None and ev.errno is None:
            # sendmmsg returns a message count; the bytes are the msg_len of each message
            sent = sendmmsg_bytes(args)
            ev.retval = sent if sent is not None else ev.retval
    return ev


_NO_EVENTS: tuple[Event, ...] = ()


class StraceReader:
    """Feed lines of one log (one pid file of -ff, or one -f log) and collect events."""

    def __init__(self, *, file: str = "<lines>", pid: int | None = None,
                 strict: bool = False) -> None:
        self.file = file
        self.fixed_pid = pid  # -ff: the pid comes from the file name, lines carry none
        self.strict = strict
        self.lines = 0
        self.parsed = 0
        self.unparsed = 0
        self.truncated = 0
        self.orphans = 0
        self.blank = 0
        # unfinished calls by pid; the C counter reads it (strace_parsers/native.py)
        self.pending: dict[int | None, CallPart] = {}
        self._table = SummaryTableParser()
        self._carry = ""

    def feed(self, line: str, line_no: int, *, last: bool = False) -> tuple[Event, ...]:
        """Parse one line (trailing newline allowed). `last` marks a final line that had
        no newline: if it does not parse it is a truncated line, not an unparsed one."""
        self.lines += 1
        text = line[:-1] if line.endswith("\n") else line
        if text.endswith("\r"):
            text = text[:-1]
        if self._carry:
            text = self._carry + text
            self._carry = ""
        if not text.strip():
            self.parsed += 1
            self.blank += 1
            return _NO_EVENTS
        if self._table.wants(text):
            ok, row = self._table.feed(text)
            if ok:
                self.parsed += 1
                return (row,) if row is not None else _NO_EVENTS
        injected = split_injected_message(text)
        if injected is not None and not text.startswith("strace: "):
            head, message = injected
            self._carry = head
            res = parse_line(message)
            self.parsed += 1
            return (res,) if res is not None and not isinstance(res, CallPart) else _NO_EVENTS
        res = parse_line(text)
        if res is None:
            return self._bad(text, line_no, last)
        self.parsed += 1
        if not isinstance(res, CallPart):
            return (res,)
        if self.fixed_pid is not None:
            res.pid = self.fixed_pid
        return self._call(res)

    @property
    def can_hand_off(self) -> bool:
        """Whether the next line may be counted elsewhere (the C counter): not while the
        summary table is being read or the head of a line split by a strace message
        waits for its tail; the pending calls are shared through `pending`."""
        return not self._carry and self._table.state not in ("header", "rows")

    def adopt_unfinished(self, text: str) -> None:
        """Hold the `<unfinished ...>` line `text` (already counted as a line elsewhere) as
        if it had been fed here: its `<... resumed>` half will find it."""
        part = parse_line(text)
        if not isinstance(part, CallPart) or part.state != "unfinished":
            raise ValueError(f"not an unfinished call line: {text!r}")
        if self.fixed_pid is not None:
            part.pid = self.fixed_pid
        self.pending[part.pid] = part

    def _bad(self, text: str, line_no: int, last: bool) -> tuple[Event, ...]:
        if last:
            self.truncated += 1
            return (TruncatedLineEvent(self.file, line_no, text),)
        if self.strict:
            raise StraceParseError(self.file, line_no, text)
        self.unparsed += 1
        return (UnparsedLineEvent(self.file, line_no, text),)

    def _call(self, part: CallPart) -> tuple[Event, ...]:
        pending = self.pending
        state = part.state
        if state == "complete":
            stale = pending.pop(part.pid, None)
            ev = make_syscall_event(part, part.args)
            if stale is not None:
                return (self._unreturned(stale), ev)
            return (ev,)
        if state == "unfinished":
            stale = pending.pop(part.pid, None)
            pending[part.pid] = part
            return (self._unreturned(stale),) if stale is not None else _NO_EVENTS
        if state == "detached":
            return (self._unreturned(part),)
        # resumed: the start is pending under this pid; a start printed before strace
        # began showing `[pid N]` prefixes is pending under None
        start = pending.pop(part.pid, None)
        if start is None and part.pid is not None:
            cand = pending.get(None)
            if cand is not None and cand.name == part.name:
                start = pending.pop(None)
        if start is None or start.name != part.name:
            self.orphans += 1
            ev = make_syscall_event(part, part.args, orphan=True)
            return (self._unreturned(start), ev) if start is not None else (ev,)
        part.time_s = start.time_s if start.time_s is not None else part.time_s
        return (make_syscall_event(part, start.args + part.args, resumed=True),)

    def _unreturned(self, part: CallPart) -> SyscallEvent:
        return make_syscall_event(part, part.args, returned=False)

    def finish(self) -> tuple[Event, ...]:
        """End of input: calls still unfinished never returned (the log ended first)."""
        out: list[Event] = [self._unreturned(p) for p in self.pending.values()]
        self.pending.clear()
        if self._carry:
            # the line that carried this head was counted as parsed (its strace message);
            # what is left of it is the unfinished trace line of a log that ended
            self.parsed -= 1
            out.extend(self._bad(self._carry, self.lines, True))
            self._carry = ""
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Source:
    """One file to read: its label, and the pid its name gives (-ff files)."""

    path: str
    pid: int | None


_FF_RE = re.compile(r".+\.(\d+)")


def expand_sources(paths: Iterable[str | os.PathLike[str]]) -> list[Source]:
    """Files as given; a directory means the per-process files `PREFIX.PID` of
    `strace -ff -o DIR/PREFIX`, ordered by pid."""
    out: list[Source] = []
    for raw in paths:
        p = Path(raw)
        try:
            p.stat()
        except FileNotFoundError:
            pass  # said below, with the advice
        except OSError as exc:  # a name too long, a loop of links, a directory not allowed
            raise StraceInputError(f"{str(p)[:200]}: {exc.strerror}") from None
        if p.is_dir():
            found = []
            try:
                children = list(p.iterdir())
            except OSError as exc:
                raise StraceInputError(f"{p}: cannot list ({exc.strerror})") from None
            for child in children:
                m = _FF_RE.fullmatch(child.name)
                if m is not None and child.is_file():
                    found.append((int(m.group(1)), child.name, child))
            if not found:
                raise StraceInputError(
                    f"{p}: no per-process strace files (PREFIX.PID) in this directory; "
                    "record with strace -ff -o DIR/PREFIX or pass the log file itself"
                )
            out.extend(Source(str(c), pid) for pid, _, c in sorted(found))
        elif p.is_file():
            out.append(Source(str(p), None))
        elif p.exists():
            raise StraceInputError(f"{p}: not a regular file or directory")
        else:
            raise StraceInputError(f"{p}: no such file; pass an strace -o log or -ff directory")
    return out


def open_log(path: str) -> TextIO:
    """Open a log as text. strace escapes non-ASCII bytes, but paths and injected program
    output may not be UTF-8, so undecodable bytes are kept as surrogates, never fatal."""
    try:
        return open(path, encoding="utf-8", errors="surrogateescape", newline="\n")
    except OSError as exc:
        raise StraceInputError(f"{path}: cannot read ({exc.strerror}); check the path "
                               "and permissions") from exc


def _iter_reader(reader: StraceReader, lines: Iterable[str], *,
                 detect_truncation: bool) -> Iterator[Event]:
    feed = reader.feed
    if detect_truncation:
        # in a file, a line without its newline can only be the last one
        for n, line in enumerate(lines, 1):
            yield from feed(line, n, last=line[-1:] != "\n")
    else:
        for n, line in enumerate(lines, 1):
            yield from feed(line, n)
    yield from reader.finish()


def iter_events(path_or_lines: str | os.PathLike[str] | Iterable[str], *,
                strict: bool = False) -> Iterator[Event]:
    """Stream typed events from an strace log file, an -ff directory, or lines of text.

    Constant memory: one line is held at a time, plus the pending unfinished call per pid.
    """
    if isinstance(path_or_lines, str | os.PathLike):
        for src in expand_sources([path_or_lines]):
            reader = StraceReader(file=src.path, pid=src.pid, strict=strict)
            try:
                with open_log(src.path) as fh:
                    yield from _iter_reader(reader, fh, detect_truncation=True)
            except OSError as exc:  # a read failing midway: EIO, a vanished mount, ...
                raise StraceInputError(f"{src.path}: cannot read ({exc.strerror or exc}); "
                                       "check the path and the device") from exc
        return
    reader = StraceReader(strict=strict)
    yield from _iter_reader(reader, path_or_lines, detect_truncation=False)


__all__ = [
    "FD_FIRST", "Source", "StraceInputError", "StraceParseError", "StraceReader",
    "classify_annotation", "expand_sources", "iter_events", "make_syscall_event", "open_log",
]
