"""Arbitrary text never crashes or hangs the parser, and every line is accounted for."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strace_parsers import (
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


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line_lists, st.booleans())
def test_counting_path_agrees_with_event_path_on_any_text(lines: list[str],
                                                         final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.log"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        fast = summarize_paths([str(path)])
        slow = summarize_events(iter_events(str(path)))
        events = list(iter_events(str(path)))
    assert fast.lines == text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    assert fast.unparsed == sum(isinstance(e, UnparsedLineEvent) for e in events)

    def key(s):  # type: ignore[no-untyped-def]
        return {n: (x.calls, x.errors, x.bytes, x.unreturned, x.iov_count)
                for n, x in s.syscalls.items()}

    assert key(fast) == key(slow)
    assert all(isinstance(e.name, str) for e in events if isinstance(e, SyscallEvent))
