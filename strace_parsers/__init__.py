"""A complete, fast, streaming parser of real strace output (strace 5.x/6.x).

    from strace_parsers import iter_events, summarize_paths
    summary = summarize_paths(["trace.log"], fd_proto={"TCP", "TCPv6"})
    summary.syscalls["sendmsg"].calls

Counting runs in C when `_fastcount.c` was built (NATIVE_COUNTER), else in pure Python;
both count exactly alike. Errors derive from StraceError; this package imports nothing
from the toolkit that uses it.
"""

from strace_parsers.aggregate import (
    FD_KINDS,
    Implementation,
    Summary,
    SyscallStats,
    summarize_events,
    summarize_paths,
)
from strace_parsers.errors import (
    StraceError,
    StraceInputError,
    StraceParseError,
    StraceUsageError,
)
from strace_parsers.events import (
    WRITE_FAMILY,
    Event,
    ExitEvent,
    ProcessEvent,
    SignalEvent,
    StackFrameEvent,
    SummaryRowEvent,
    SyscallEvent,
    TruncatedLineEvent,
    UnparsedLineEvent,
)
from strace_parsers.line import parse_line
from strace_parsers.native import NATIVE_COUNTER
from strace_parsers.stream import StraceReader, expand_sources, iter_events
from strace_parsers.values import FdInfo, decode_string, parse_fd, split_args, unescape

__all__ = [
    "FD_KINDS", "NATIVE_COUNTER", "WRITE_FAMILY", "Event", "ExitEvent", "FdInfo",
    "Implementation", "ProcessEvent", "SignalEvent", "StackFrameEvent", "StraceError",
    "StraceInputError", "StraceParseError", "StraceReader", "StraceUsageError", "Summary",
    "SummaryRowEvent", "SyscallEvent", "SyscallStats", "TruncatedLineEvent",
    "UnparsedLineEvent", "decode_string", "expand_sources", "iter_events", "parse_fd",
    "parse_line", "split_args", "summarize_events", "summarize_paths", "unescape",
]
