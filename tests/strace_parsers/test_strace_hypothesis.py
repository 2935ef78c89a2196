"""Arbitrary text never crashes or hangs the parser, every line is accounted for, and every
counting path (C counter, pure-Python block scan, event reader) gives the same figures."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_strace_oracle import tallies

from strace_parsers import (
    NATIVE_COUNTER,
    StraceReader,
    SyscallEvent,
    UnparsedLineEvent,
    iter_events,
    summarize_events,
    summarize_paths,
)

FRAGMENTS = [
    "123  ", "[pid  7] ", "11:22:33.123456 ", "1700000000.000001 ", "write(", "sendmsg(",
    "<... write resumed>", " <unfinished ...>", "3<TCP:[1.1.1.1:1->2.2.2.2:2]>, ", '"a) = 5', '"',
    "\\", ", 7", ") = 7", ") = -1 EAGAIN (Resource temporarily unavailable)", ") = ?",
    " <0.000010>", "--- SIGINT {si_signo=SIGINT} ---", "+++ exited with 0 +++",
    "% time     seconds  usecs/call     calls    errors syscall",
    "------ ----------- ----------- --------- --------- ----------------", "strace: Process 9 ",
    "attached", "{iov_base=\"x\", iov_len=1}", "[", "]", "{", "}", "(", "<", ">", " ", "...",
    # what the C counter and the block scan read: prefixes, gather writes, annotations, results
    "[pid 7<py>] ", "7<comm> ", "11:22:33 ", "   0.000123 ", "11:22:33.1 (+     0.000012) ",
    "[ 0000ab] ", "writev(", "sendmmsg(", "sendto(", "splice(", "pwritev(", "???(",
    "<... writev resumed>", "<... sendmsg resumed>", " <detached ...>", "<unfinished ...>",
    "5<TCPv6:[[::1]:1->[::1]:2]>, ", "4<socket:[9]>, ", "1</dev/null<char 1:3>>, ",
    "6<pipe:[3]>, ", "7<anon_inode:[eventfd]>", "9<\\x2fdev>", "3<TCP>", "-1, ", ", 012",
    ")  = 7", ") = 012", ") = 0x1f", ") = -1", " E?? (", " 512 (", ") = ? <unavailable>",
    " <12.5>", " <0.1234567891>", "+++ killed by SIGKILL +++", "strace: Process 9 attached",
    "{iov_base=\"ab\"..., iov_len=20}", "[{iov_base=\"y\", iov_len=3}, ...]", "...]",
    "msg_iovlen=2", "msg_len=5", "é", "\x1c", "\r", "\t", " > /lib/x.so(f+0x1) [0x2]",
    " 12.50    0.000100          10        10         2 write", "= 99999999999999999999",
]
strace_like = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)
any_line = st.one_of(strace_like, st.text(max_size=60))
line_lists = st.lists(any_line.map(lambda s: s.replace("\n", " ").replace("\r", " ")),
                      max_size=25)


@settings(max_examples=200, deadline=None)
@given(line_lists)
def test_every_line_is_parsed_unparsed_or_truncated(lines: list[str]) -> None:
    reader = StraceReader()
    events = []
    for n, line in enumerate(lines, 1):
        events.extend(reader.feed(line + "\n", n))
    events.extend(reader.finish())
    assert reader.lines == len(lines)
    assert reader.parsed + reader.unparsed + reader.truncated == reader.lines
    assert reader.unparsed == sum(isinstance(e, UnparsedLineEvent) for e in events)


IMPLEMENTATIONS = ["c", "python"] if NATIVE_COUNTER else ["python"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line_lists, st.booleans())
def test_counting_paths_agree_with_the_event_path_on_any_text(lines: list[str],
                                                             final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.log"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        slow = summarize_events(iter_events(str(path)))
        events = list(iter_events(str(path)))
        counted = {impl: summarize_paths([str(path)], implementation=impl)  # type: ignore[arg-type]
                   for impl in IMPLEMENTATIONS}
    for fast in counted.values():
        assert fast.lines == text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        assert fast.unparsed == sum(isinstance(e, UnparsedLineEvent) for e in events)
        assert (fast.truncated, fast.orphan_resumed, fast.signals, fast.exits) == (
            slow.truncated, slow.orphan_resumed, slow.signals, slow.exits)
        assert tallies(fast) == tallies(slow)
    assert all(isinstance(e.name, str) for e in events if isinstance(e, SyscallEvent))
