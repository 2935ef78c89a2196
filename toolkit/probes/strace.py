"""Counting pass: run a command under real strace and count its socket writes.

strace is started with ``-f --seccomp-bpf`` and a write-family filter, so only those
syscalls stop the tracee (the rest run at full speed), and ``-yy`` so each fd carries its
socket kind: only TCP sockets count (asyncio's self-pipe is a UNIX socket, logging goes
to a pipe or file).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from strace_parsers import WRITE_FAMILY, summarize_paths
from strace_parsers.errors import StraceError
from toolkit.errors import PermissionProblem, WriteshapeError, find_tool

TRACED_WRITES = ("write", "writev", "sendto", "sendmsg", "sendmmsg", "pwrite64", "pwritev",
                 "sendfile", "splice")


def strace_wrapper(log_path: str) -> list[str]:
    """The argv prefix that runs a command under strace, logging to ``log_path``."""
    return [find_tool("strace", "strace"), "-f", "--seccomp-bpf", "-qq", "-yy", "-e",
            "trace=" + ",".join(TRACED_WRITES), "-o", log_path, "--"]


TCP_PROTOS = frozenset({"TCP", "TCPv6"})


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
    try:
        # Declarative: the counting path applies it to its rows (a callable would need an
        # event per line, at a tenth of the speed).
        summary = summarize_paths([log_path], fd_proto=TCP_PROTOS)
    except StraceError as exc:
        raise WriteshapeError(f"cannot count the strace log {log_path}: {exc}") from exc
    calls = {name: st.calls for name, st in summary.syscalls.items()
             if name in WRITE_FAMILY and st.calls}
    writes = [st for name, st in summary.syscalls.items() if name in WRITE_FAMILY]
    return TcpWriteCounts(calls, sum(st.errors for st in writes), sum(st.bytes for st in writes),
                          summary.unparsed, summary.lines)


@functools.lru_cache(maxsize=1)
def strace_attach_problem() -> str | None:
    """None when strace can trace a child process here; otherwise why not (its last line).

    Asked once per process, before a comparison decides where its TLS records come from."""
    strace = shutil.which("strace")
    if strace is None:
        return "strace is not installed"
    try:
        proc = subprocess.run([strace, "-f", "-qq", "-o", os.devnull, "--", "true"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace did not run: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return lines[-1] if lines else f"strace exited with {proc.returncode}"
    return None


def check_ptrace_allowed(stderr_text: str) -> None:
    """Raise PermissionProblem naming the likely cause when strace was refused ptrace."""
    if "Operation not permitted" in stderr_text and "ptrace" in stderr_text.lower():
        raise PermissionProblem(
            f"strace cannot attach: ptrace not permitted ({ptrace_refusal_cause()}); "
            "or use --no-strace")


def ptrace_refusal_cause(proc: str = "/proc") -> str:
    """Why ptrace is refused to this process, and the fix, from what /proc shows."""
    try:
        with open(f"{proc}/sys/kernel/yama/ptrace_scope") as f:
            scope: int | None = int(f.read().strip())
    except (OSError, ValueError):
        scope = None
    root = os.geteuid() == 0
    if scope == 3:
        return "kernel.yama.ptrace_scope=3 forbids ptrace until reboot"
    if scope == 2 and not root:
        return "kernel.yama.ptrace_scope=2 allows it to root only: run as root"
    try:
        with open(f"{proc}/self/status") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        status = {}
    if status.get("Seccomp", "0").strip() == "2":
        # Most containers have a filter; one that refuses ptrace is the usual culprit.
        return ("probably this process's seccomp filter, as in a container: allow ptrace "
                "in its profile or add CAP_SYS_PTRACE, e.g. docker run --cap-add SYS_PTRACE")
    if not root:
        return "not root and no CAP_SYS_PTRACE: run as root or set kernel.yama.ptrace_scope=0"
    return "root without CAP_SYS_PTRACE: grant CAP_SYS_PTRACE to this process"
