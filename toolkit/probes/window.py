"""What a syscall counter saw in one window (attach, load, detach), the same for strace
and perf, so a caller picks the counter (``--counter strace|perf``) and reads one shape."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The write family of x86-64 Linux, by strace's names. perf's tracepoints use the
# kernel's (sendfile is sys_enter_sendfile64).
WRITE_SYSCALLS = ("write", "writev", "sendto", "sendmsg", "sendmmsg", "sendfile", "splice",
                  "pwrite64", "pwritev", "pwritev2")


@dataclass
class WindowCounts:
    """Write-family calls of a process tree during one window.

    ``scope`` says what was counted: "tcp" (strace with -yy: calls on TCP sockets only) or
    "any-fd" (perf: a tracepoint cannot tell a socket from a file). ``other_fd_calls`` is
    what strace saw on other fds (files, pipes, UNIX sockets): the calls a perf count
    would include on top of the TCP ones. Figures a counter cannot give are None.
    """

    counter: str  # "strace" | "perf"
    scope: str  # "tcp" | "any-fd"
    pids: tuple[int, ...]
    duration_s: float
    calls: dict[str, int]  # syscall -> calls (failed ones, e.g. EAGAIN, included)
    bytes: int | None = None  # returned bytes of successful calls (strace only)
    errors: int | None = None  # calls that returned -1 (strace only)
    other_fd_calls: int | None = None
    other_fd_by_syscall: dict[str, int] | None = None
    unparsed_lines: int | None = None
    # strace's own tally of the same run (-C, every fd): calls per syscall, a check of
    # the parse (calls + other_fd_by_syscall must equal it). None for perf.
    strace_c_calls: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def per_response(self, responses: int) -> float | None:
        return self.total_calls / responses if responses > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_calls"] = self.total_calls
        return d


def spawn_counter(argv: Sequence[str], err_path: str) -> subprocess.Popen[bytes]:
    """Start a counter (strace, perf) quietly: its stderr to a file the caller reads for
    readiness and errors, nothing on the terminal."""
    with open(err_path, "wb") as err:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)


def live_pids(pids: Iterable[int]) -> tuple[int, ...]:
    """The pids that still exist, in order, once each: a tree's short-lived processes
    can exit between listing and attaching, and both strace and perf refuse a dead pid."""
    return tuple(p for p in dict.fromkeys(pids) if os.path.exists(f"/proc/{p}"))
