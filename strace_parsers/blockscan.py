"""The pure-Python counting path: one regex over a block of lines, not a loop per line.

It runs where the C counter (`_fastcount.c`) was not built, and is its reference in the
tests. One regex over a whole block (re.M) sorts each line: a complete call (name, the
head of the first argument's fd annotation, result, the text after the result), or
anything else (last group). Only lines whose text after `) = ` has no quote qualify, so a
`) = ` inside a string can never end a call. Timestamps and arguments of plain calls are
not captured, so identical calls give identical tuples and a Counter counts them in C.
The prefix (pid, timestamps) is chosen per file from its first lines: a regex for exactly
that shape is much faster than one with every prefix optional; lines of another shape take
the `other` branch. Among those, gather writes (writev, sendmsg) are read by a second
regex; every other line goes through the full reader (stream.py), in order.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, TextIO

from strace_parsers.events import WRITE_FAMILY
from strace_parsers.line import CallPart, result_int
from strace_parsers.stream import StraceReader
from strace_parsers.tally import (
    BYTES,
    CALLS,
    DUR_NS,
    ERRORS,
    HIST,
    IOVS,
    REQ_BYTES,
    REQ_CALLS,
    TIMED,
    UNRETURNED,
    Row,
    RowKey,
    Tally,
    add_sizes,
    duration_ns,
    hist_slot,
)
from strace_parsers.values import (
    MSG_IOVLEN_RE,
    classify_annotation,
    int_or_none,
    iov_sum,
    parse_fd,
)

_HEX = r"0x[0-9a-fA-F]+"
# The first argument's fd and its whole annotation, ended as values.parse_fd ends it: at
# the first `>` followed by `,`, ` <`, or blanks up to the end of the arguments (the last
# `) = ` followed by a result), so the kind is the one the event path gives.
_ANNOTATION = (
    r"<.*?>(?=,| <|\s*\) += (?:-?\d|\?)(?:(?!\) += (?:-?\d|\?))[^\"\n])*$)"
)
_FD = r"(?:-?\d+(?:(" + _ANNOTATION + r")|(?=[,)])))?"
# name and first argument with its fd annotation: `write(3</dev/null<char 1:3>>`
_NAME_FD = (
    r"(?!writev\(|sendm|pwritev|sendfile|splice\()[a-z][a-z0-9_]*\("
    r"(?:-?\d+(?:" + _ANNOTATION + r"|(?=[,)])))?"
)
# the result and what follows it, up to a line end that is not `...>` (a call left
# `<unfinished ...>` with a `) = ` in its arguments) nor a blank (rstrip'd by the grammar)
_RESULT = r".*\) += ((?:" + _HEX + r"|-?\d+|\?)[^\"\n]*)(?<!\.\.\.>)(?<!\s)$"
# Few captured strings per line keep findall cheap: without timestamps the pid, name and
# fd head are one contiguous group; with them, pid and the rest are two.
_BLOCK_NO_TIME = r"^({pid}" + _NAME_FD + r")()" + _RESULT + r"|^(.*)$"
_KEY_RE = re.compile(r"(?:(\d+) +)?([a-z][a-z0-9_]*)\((?:-?\d+(?:<(.*)>)?)?", re.S)
_RET_RE = re.compile(r"(" + _HEX + r"|-?\d+|\?)(.*)", re.S)
# one gather-write line (writev, sendmsg) of the `other` branch, arguments captured
_VECTOR_TEMPLATE = (
    r"{prefix}(writev|sendmsg)\(" + _FD + r"(.*)\) += (" + _HEX + r"|-?\d+|\?)([^\"\n]*)"
)
_PIDS = (r"\d+ +", r"")
_ABS_TIME = r"(?:\d\d:\d\d:\d\d(?:\.\d+)?|\d+\.\d+)"
_TIMES = ("", _ABS_TIME + " +", r" *\d+\.\d+ +", _ABS_TIME + r" \(\+ *\d+\.\d+\) +")
_SNIFF_LINES = 200
_ERRNO_RE = re.compile(r" ([A-Z][A-Z0-9_]*|E\?+|\d+) \(")
_DUR_RE = re.compile(r".* <(\d+\.\d+)>")
BLOCK_CHARS = 1 << 20
_INJECTED = "strace: Process "


@lru_cache(maxsize=16)
def _block_re(pid: str, ts: str) -> re.Pattern[str]:
    if not ts:
        return re.compile(_BLOCK_NO_TIME.replace("{pid}", pid), re.M)
    head = r"^(\d+) +" if pid else r"^()"
    return re.compile(head + ts + "(" + _NAME_FD + ")" + _RESULT + r"|^(.*)$", re.M)


# the halves of a call split by another thread's line (-f): `name(args <unfinished ...>` and
# `<... name resumed>args) = result`; joined through the reader's table of pending calls
_UNFINISHED_TEMPLATE = r"{prefix}([a-z][a-z0-9_]*)\((.*)<unfinished \.\.\.>"
_RESUMED_TEMPLATE = (
    r"{prefix}<\.\.\. ([a-z][a-z0-9_]*) resumed> ?(.*)\) += (" + _HEX + r"|-?\d+|\?)([^\"\n]*)"
)
# resumed calls whose counts need more than the first argument and the result
_RESUMED_BY_READER = frozenset({"splice", "sendmmsg", "pwritev", "pwritev2"})


@lru_cache(maxsize=16)
def _line_res(pid: str, ts: str) -> tuple[Any, Any, Any]:
    """fullmatch of a gather write, of an unfinished half and of a resumed half."""
    prefix = (r"(\d+) +" if pid else "()") + ts
    vector, unfinished, resumed = (
        re.compile(t.replace("{prefix}", prefix)).fullmatch
        for t in (_VECTOR_TEMPLATE, _UNFINISHED_TEMPLATE, _RESUMED_TEMPLATE))
    return vector, unfinished, resumed


def _fd_of(args: str) -> tuple[str | None, str | None]:
    """(fd kind, protocol) of a call's first argument, as stream.make_syscall_event reads it."""
    if args[:1].isdigit() or args[:1] == "-":
        info = parse_fd(args)
        if info is not None:
            return info.kind, info.proto
    return None, None


@lru_cache(maxsize=8192)
def fd_info(annotation: str | None) -> tuple[str | None, str | None]:
    """(fd kind, protocol) of an annotation such as `TCP:[1.2.3.4:5->6.7.8.9:10]`."""
    if annotation is None:
        return None, None
    kind, proto, _ = classify_annotation(annotation)
    return kind, proto


@lru_cache(maxsize=4096)
def _key_of(g1: str, g2: str) -> RowKey:
    """(pid, name, fd kind, protocol) from the captured `PID  name(FD<annotation>` text."""
    m = _KEY_RE.fullmatch(f"{g1} {g2}" if g1 and g2 else g1 or g2)
    if m is None:  # cannot happen for text the block regex captured
        return None, g2 or g1, None, None
    pid = m.group(1)
    return (int(pid) if pid else None, m.group(2), *fd_info(m.group(3)))


@lru_cache(maxsize=4096)
def _vector_key(pid: str, name: str, annotation: str | None) -> RowKey:
    return (int(pid) if pid else None, name,
            *fd_info(None if annotation is None else annotation[1:-1]))


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


def _tally_call(row: Row, name: str, ret: str, rest: str, count: int) -> None:
    """Add `count` identical complete calls (same name, result and tail) to a row."""
    if ret == "-1" or ret == "?":
        if _ERRNO_RE.match(rest) is not None:
            row[CALLS] += count
            row[ERRORS] += count
            _tally_duration(row, rest, count)
            return
        if ret == "?" and not rest.startswith(" <unavailable>"):
            row[UNRETURNED] += count  # the process went away inside the call
            return
    row[CALLS] += count
    _tally_duration(row, rest, count)
    if name in WRITE_FAMILY and ret != "?":
        nbytes = result_int(ret)
        if nbytes >= 0:
            row[BYTES] += nbytes * count
            add_sizes(row[HIST], hist_slot(nbytes), count)


def _tally_duration(row: Row, rest: str, count: int) -> None:
    if rest:
        dm = _DUR_RE.fullmatch(rest)
        if dm is not None:
            row[DUR_NS] += duration_ns(float(dm.group(1))) * count
            row[TIMED] += count


def _tally_vector(row: Row, name: str, args: str, ret: str, rest: str) -> None:
    before = row[CALLS]
    _tally_call(row, name, ret, rest, 1)
    if row[CALLS] == before:
        return  # not returned: nothing asked for counts
    req = iov_sum(args)
    if req is not None:
        row[REQ_BYTES] += req
        row[REQ_CALLS] += 1
    if name == "writev":
        count = int_or_none(args[args.rfind(", ") + 2 :])
    else:
        im = MSG_IOVLEN_RE.search(args)
        count = int(im.group(1)) if im is not None else None
    if count is not None:
        row[IOVS] += count


def iter_blocks(fh: TextIO) -> Iterator[tuple[str, bool]]:
    """Blocks of whole lines (without the final newline) and whether the file ended in one."""
    carry = ""
    while True:
        chunk = fh.read(BLOCK_CHARS)
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


def count_file_python(tally: Tally, reader: StraceReader, fh: TextIO) -> None:
    """Count one log: classify a block of lines with one findall, count runs of
    complete calls with a Counter, read the other lines one by one, in order."""
    base = fast = 0
    block_re: re.Pattern[str] | None = None
    line_res: tuple[Any, Any, Any] = (None, None, None)
    for block, ends_with_newline in iter_blocks(fh):
        if block_re is None:
            pid_pat, ts_pat = _sniff_prefix(block)
            block_re, line_res = _block_re(pid_pat, ts_pat), _line_res(pid_pat, ts_pat)
        found = block_re.findall(block)
        if len(found) != block.count("\n") + 1 or _INJECTED in block:
            # not one tuple per line, or a strace message splitting a line (the reader
            # mends it): read this block with the full grammar
            lines = block.split("\n")
            for i, text in enumerate(lines):
                last = i == len(lines) - 1 and not ends_with_newline
                feed_line(tally, reader, text, base + i + 1, last)
            base += len(lines)
            continue
        fast += _BlockCount(tally, reader, line_res, block, found, base,
                            ends_with_newline).run()
        base += len(found)
    for ev in reader.finish():
        tally.add_event(ev, reader.file)
    # the reader counted only the lines it saw; the fast ones were parsed too
    reader.lines += fast
    reader.parsed += fast


def _count_complete(tally: Tally, fixed_pid: int | None,
                    counts: Counter[tuple[str, str, str, str]]) -> None:
    """Complete calls, nothing pending: identical lines counted at once."""
    for (g1, g2, result, _other), count in counts.items():
        key = _key_of(g1, g2)
        if fixed_pid is not None:
            key = (fixed_pid, *key[1:])
        rm = _RET_RE.fullmatch(result)
        if rm is not None:  # always: the block regex matched this result
            _tally_call(tally.row(key), key[1], rm.group(1), rm.group(2), count)


class _BlockCount:
    """The lines of one block in order where order matters: a call line of a pid with a
    pending call ends it, and one inside the -C table ends the table, so the reader must
    see such lines. Runs of complete calls while the reader holds nothing are counted at
    once (a Counter of identical lines; short runs one by one); other lines go one by one."""

    def __init__(self, tally: Tally, reader: StraceReader, line_res: tuple[Any, Any, Any],
                 block: str, found: list[tuple[str, str, str, str]], base: int,
                 ends_with_newline: bool) -> None:
        self.tally, self.reader = tally, reader
        self.vector, self.unfinished, self.resumed = line_res
        self.block, self.found, self.base = block, found, base
        self.last_index = len(found) - 1 if not ends_with_newline else -1
        self.lines: list[str] | None = None
        self.fast = 0

    def run(self) -> int:
        """Count the block; returns how many lines were counted without the reader."""
        found = self.found
        start = 0
        for i in (*[i for i, t in enumerate(found) if not (t[0] or t[1])], len(found)):
            if start < i:
                if i - start > 3 and not self.reader.pending and self.reader.can_hand_off:
                    _count_complete(self.tally, self.reader.fixed_pid, Counter(found[start:i]))
                    self.fast += i - start
                else:
                    for j in range(start, i):
                        self._complete(j)
            if i < len(found):
                self._other(i)
            start = i + 1
        return self.fast

    def _free(self, key: RowKey) -> bool:
        reader = self.reader
        return (not reader.pending or key[0] not in reader.pending) and reader.can_hand_off

    def _key(self, key: RowKey) -> RowKey:
        fixed_pid = self.reader.fixed_pid
        return key if fixed_pid is None else (fixed_pid, *key[1:])

    def _complete(self, i: int) -> None:
        g1, g2, result, _ = self.found[i]
        key = self._key(_key_of(g1, g2))
        if not self._free(key):
            if self.lines is None:
                self.lines = self.block.split("\n")
            self._feed(i, self.lines[i])
            return
        rm = _RET_RE.fullmatch(result)
        if rm is not None:  # always: the block regex matched this result
            _tally_call(self.tally.row(key), key[1], rm.group(1), rm.group(2), 1)
        self.fast += 1

    def _other(self, i: int) -> None:
        text = self.found[i][3]
        if self.reader.can_hand_off:
            if text.endswith("<unfinished ...>"):
                if self._unfinished(text):
                    return
            elif "resumed>" in text:
                if self._resumed(text):
                    return
            elif self._vector(text):
                return
        self._feed(i, text)

    def _vector(self, text: str) -> bool:
        vm = self.vector(text)
        if vm is None or vm.group(6).rstrip().endswith("...>"):
            return False
        pid, name, annotation, args, ret, rest = vm.groups()
        key = self._key(_vector_key(pid, name, annotation))
        if not self._free(key):
            return False
        _tally_vector(self.tally.row(key), name, args, ret, rest)
        self.fast += 1
        return True

    def _unfinished(self, text: str) -> bool:
        m = self.unfinished(text)
        if m is None:
            return False
        pid_text, name, args = m.groups()
        pid = self._pid(pid_text)
        if pid in self.reader.pending:
            return False  # the reader reports the stale start
        args = args[:-1] if args.endswith(" ") else args  # the space before the marker
        self.reader.pending[pid] = CallPart("unfinished", pid, None, name, args)
        self.fast += 1
        return True

    def _resumed(self, text: str) -> bool:
        m = self.resumed(text)
        if m is None:
            return False
        pid_text, name, args, ret, rest = m.groups()
        pid = self._pid(pid_text)
        start = self.reader.pending.get(pid)
        if (start is None or start.name != name or name in _RESUMED_BY_READER
                or args.startswith(" <unfinished ...>")):
            return False  # orphans, and calls whose counts need the reader
        del self.reader.pending[pid]
        joined = start.args + args
        row = self.tally.row((pid, name, *_fd_of(joined)))
        if name in ("writev", "sendmsg"):
            _tally_vector(row, name, joined, ret, rest)
        else:
            _tally_call(row, name, ret, rest, 1)
        self.fast += 1
        return True

    def _pid(self, pid_text: str) -> int | None:
        fixed_pid = self.reader.fixed_pid
        if fixed_pid is not None:
            return fixed_pid
        return int(pid_text) if pid_text else None

    def _feed(self, i: int, text: str) -> None:
        feed_line(self.tally, self.reader, text, self.base + i + 1, i == self.last_index)


def feed_line(tally: Tally, reader: StraceReader, text: str, line_no: int, last: bool) -> None:
    """One line through the full reader (the line without its newline)."""
    for ev in reader.feed(text if last else text + "\n", line_no, last=last):
        tally.add_event(ev, reader.file)
