"""Counting pass: run a command under real strace and count its socket writes.

strace is started with ``-f --seccomp-bpf`` and a write-family filter, so only those
syscalls stop the tracee (the rest run at full speed), and ``-yy`` so each fd carries its
socket kind: only TCP sockets count (asyncio's self-pipe is a UNIX socket, logging goes
to a pipe or file).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from strace_parsers import WRITE_FAMILY, SyscallEvent, summarize_paths
from toolkit.errors import MissingToolError, PermissionProblem

TRACED_WRITES = ("write", "writev", "sendto", "sendmsg", "sendmmsg", "pwrite64", "pwritev",
                 "sendfile", "splice")


def strace_wrapper(log_path: str) -> list[str]:
    """The argv prefix that runs a command under strace, logging to ``log_path``."""
    strace = shutil.which("strace")
    if strace is None:
        raise MissingToolError("strace", "strace")
    return [strace, "-f", "--seccomp-bpf", "-qq", "-yy", "-e",
            "trace=" + ",".join(TRACED_WRITES), "-o", log_path, "--"]


def is_tcp(ev: SyscallEvent) -> bool:
    return ev.fd_proto in ("TCP", "TCPv6")


@dataclass
class TcpWriteCounts:
    calls: dict[str, int]  # every call, the ones that failed (EAGAIN) included
    errors: int
    bytes: int
    unparsed_lines: int
    lines: int

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def count_tcp_writes(log_path: str) -> TcpWriteCounts:
    """Write-family calls on TCP sockets in one strace log (calls include EAGAIN ones)."""
    summary = summarize_paths([log_path], fd_filter=is_tcp)
    calls = {name: st.calls for name, st in summary.syscalls.items()
             if name in WRITE_FAMILY and st.calls}
    writes = [st for name, st in summary.syscalls.items() if name in WRITE_FAMILY]
    return TcpWriteCounts(calls, sum(st.errors for st in writes), sum(st.bytes for st in writes),
                          summary.unparsed, summary.lines)


def check_ptrace_allowed(stderr_text: str) -> None:
    if "Operation not permitted" in stderr_text and "ptrace" in stderr_text.lower():
        raise PermissionProblem(
            "strace cannot attach (ptrace not permitted): run as root, or set "
            "kernel.yama.ptrace_scope=0, or use --no-strace")
