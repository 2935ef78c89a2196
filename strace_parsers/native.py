"""Glue for the C counter (`_fastcount.c`): a log read in binary blocks, the lines the C
grammar knows counted there, every other line fed to the Python reader, in order.

Only one table of unfinished calls exists at a time: before the reader sees a line, the C
counter hands its pending calls over (`take_pending`), and it leaves to the reader every
line of a pid the reader holds a pending call for. So a `<... resumed>` half always meets
its start, whichever side read it.
"""

from __future__ import annotations

import io

from strace_parsers.stream import StraceReader
from strace_parsers.tally import Tally

try:  # built by setup.py when a C compiler was at hand
    from strace_parsers import _fastcount
except ImportError:  # pragma: no cover - the pure-Python block scan counts alone
    _fastcount = None  # type: ignore[assignment]

#: Whether the C counter was built (summarize_paths uses it by default when it was).
NATIVE_COUNTER = _fastcount is not None
BLOCK_BYTES = 1 << 22


def count_file_native(tally: Tally, reader: StraceReader, fh: io.BufferedReader) -> None:
    """Count one log opened in binary mode into `tally`, `reader` keeping the line counts.

    One buffer is reused for every block (no fresh pages per block); the partial line at
    its end moves to the front before the next read."""
    assert _fastcount is not None, "strace_parsers._fastcount is not built"
    counter = _fastcount.Counter(reader.fixed_pid)
    scan = counter.scan
    pending = reader.pending
    line_no = counted = kept = 0
    buf = bytearray(BLOCK_BYTES)
    while True:
        if kept == len(buf):  # one line longer than the buffer
            buf.extend(bytes(len(buf)))
        with memoryview(buf) as view:
            got = fh.readinto(view[kept:])
        if not got:
            break
        filled = kept + got
        end = buf.rfind(b"\n", 0, filled) + 1
        pos = 0
        while pos < end:
            if reader.can_hand_off:
                pos, n = scan(buf, pos, end, pending)
                line_no += n
                counted += n
                if pos >= end:
                    break
            nl = buf.index(b"\n", pos)
            line_no += 1
            _to_reader(tally, reader, counter, bytes(buf[pos:nl]), line_no, last=False)
            pos = nl + 1
        kept = filled - end
        buf[:kept] = buf[end:filled]
    if kept:
        line_no += 1
        _to_reader(tally, reader, counter, bytes(buf[:kept]), line_no, last=True)
    _hand_over_pending(counter, reader)
    for ev in reader.finish():
        tally.add_event(ev, reader.file)
    tally.add_native_rows(counter.rows())
    # the reader counted the lines it saw; the C counter's were parsed too
    reader.lines += counted
    reader.parsed += counted


def _hand_over_pending(counter: _fastcount.Counter, reader: StraceReader) -> None:
    if counter.pending:
        for line in counter.take_pending():
            reader.adopt_unfinished(line.decode("utf-8", "surrogateescape"))


def _to_reader(tally: Tally, reader: StraceReader, counter: _fastcount.Counter,
               raw: bytes, line_no: int, *, last: bool) -> None:
    _hand_over_pending(counter, reader)
    text = raw.decode("utf-8", "surrogateescape")
    for ev in reader.feed(text if last else text + "\n", line_no, last=last):
        tally.add_event(ev, reader.file)
