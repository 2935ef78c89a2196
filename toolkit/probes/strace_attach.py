"""Count a running process tree's socket writes: strace attached for a window.

    with StraceWindow(target.pids()) as window:   # returns once every pid is attached
        run the load
    counts = window.counts                        # detached; the log parsed

strace runs with ``-f`` (threads and children forked during the window are followed) and
``-yy`` (each fd carries what it is: only TCP sockets count). ``--seccomp-bpf`` would let
untraced syscalls run at full speed, but strace 6.1 refuses it when attaching ("is not
enabled for processes attached with -p"): every syscall of the tree stops for strace, so
never time a server while this window is open (toolkit/probes/perf_syscalls.py is the
cheap counter). The log is parsed with strace_parsers.summarize_paths.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from strace_parsers import WRITE_FAMILY, summarize_paths
from strace_parsers.errors import StraceError
from toolkit.errors import PermissionProblem, WriteshapeError, find_tool
from toolkit.probes.strace import TCP_PROTOS
from toolkit.probes.window import WRITE_SYSCALLS, WindowCounts, live_pids, spawn_counter

_ATTACHED = re.compile(r"Process (\d+) attached")
_ATTACH_ERR = re.compile(r"attach: ptrace\(PTRACE_\w+, (\d+)\): (.*)")


class TraceAttachError(PermissionProblem):
    """strace could not attach to a process (gone, already traced, not permitted)."""


def find_strace() -> str:
    return find_tool("strace", "strace")


def strace_attach_argv(pids: Sequence[int], log_path: str,
                       syscalls: Sequence[str] = WRITE_SYSCALLS) -> list[str]:
    """The strace command line that attaches to ``pids`` (no -q: the attach messages
    on stderr tell when the window is open)."""
    # -C: strace's own per-syscall tally (as -c prints) at the end of the log as well, a
    # check of the parse on the same run.
    argv = [find_strace(), "-f", "-C", "-yy", "-e", "trace=" + ",".join(syscalls),
            "-o", log_path]
    for pid in pids:
        argv += ["-p", str(pid)]
    return argv


def tracer_of(pid: int) -> int | None:
    """The PID tracing ``pid`` now (TracerPid in /proc), None if none or unreadable."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("TracerPid:"):
                tracer = int(line.split()[1])
                return tracer or None
    return None


class StraceWindow:
    """strace attached to a set of pids between start() and stop()."""

    def __init__(self, pids: Sequence[int], *, syscalls: Sequence[str] = WRITE_SYSCALLS,
                 attach_timeout_s: float = 10.0, log_dir: str | None = None) -> None:
        self.pids = live_pids(pids)
        if not self.pids:
            raise TraceAttachError(f"strace cannot attach to {list(pids)}: no such process")
        self.syscalls = tuple(syscalls)
        self.attach_timeout_s = attach_timeout_s
        self._tmp = None if log_dir else tempfile.TemporaryDirectory(prefix="writeshape-strace-")
        base = log_dir or (self._tmp.name if self._tmp else ".")
        self.log_path = str(Path(base) / "attach.strace")
        self.err_path = str(Path(base) / "attach.stderr")
        self._proc: subprocess.Popen[bytes] | None = None
        self._t0 = 0.0
        self.counts: WindowCounts | None = None

    def start(self) -> StraceWindow:
        argv = strace_attach_argv(self.pids, self.log_path, self.syscalls)
        self._proc = spawn_counter(argv, self.err_path)
        try:
            self._wait_attached()
        except BaseException:
            self._kill()
            raise
        self._t0 = time.monotonic()
        return self

    def _wait_attached(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.attach_timeout_s
        want = set(self.pids)
        while True:
            text = Path(self.err_path).read_text(errors="replace")
            failed = _ATTACH_ERR.search(text)
            if failed:
                raise TraceAttachError(_attach_message(int(failed.group(1)), failed.group(2)))
            if want <= {int(p) for p in _ATTACHED.findall(text)}:
                return
            if self._proc.poll() is not None:
                last = text.strip().splitlines()[-1:] or [f"exit status {self._proc.returncode}"]
                raise TraceAttachError(f"strace could not attach: {last[0]}")
            if time.monotonic() > deadline:
                raise TraceAttachError(
                    f"strace did not attach to {sorted(want)} within {self.attach_timeout_s} s")
            time.sleep(0.01)

    def stop(self) -> WindowCounts:
        """Detach (SIGINT: strace detaches from every tracee and exits) and count."""
        if self.counts is not None:
            return self.counts
        if self._proc is None:
            raise WriteshapeError("the strace window was never started")
        duration = time.monotonic() - self._t0
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._kill()
        self.counts = count_window(self.log_path, self.pids, duration)
        return self.counts

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def cleanup(self) -> None:
        self._kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> StraceWindow:
        return self.start()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.stop()
        self.cleanup()


def count_window(log_path: str, pids: Sequence[int], duration_s: float) -> WindowCounts:
    """The write-family calls of one attach log: on TCP sockets, and on everything else."""
    try:
        # Declarative filter: the C counting path applies it to its rows.
        tcp = summarize_paths([log_path], fd_proto=TCP_PROTOS)
        every = summarize_paths([log_path])
    except StraceError as exc:
        raise WriteshapeError(f"cannot count the strace log {log_path}: {exc}") from exc
    writes = {n: s for n, s in tcp.syscalls.items() if n in WRITE_FAMILY and s.calls}
    other = {n: s.calls - (tcp.syscalls[n].calls if n in tcp.syscalls else 0)
             for n, s in every.syscalls.items() if n in WRITE_FAMILY}
    cut = sum(s.unreturned for n, s in tcp.syscalls.items() if n in WRITE_FAMILY)
    notes = [f"{cut} call(s) still running at the detach: not counted"] if cut else []
    return WindowCounts(
        counter="strace", scope="tcp", notes=notes, pids=tuple(pids), duration_s=duration_s,
        calls={n: s.calls for n, s in sorted(writes.items())},
        bytes=sum(s.bytes for s in writes.values()),
        errors=sum(s.errors for s in writes.values()),
        other_fd_calls=sum(other.values()),
        other_fd_by_syscall={n: c for n, c in sorted(other.items()) if c},
        unparsed_lines=every.unparsed,
        strace_c_calls={n: r.calls for n, r in sorted(every.strace_summary.items())
                        if n in WRITE_FAMILY} or None)


def _attach_message(pid: int, reason: str) -> str:
    tracer = tracer_of(pid)
    if "No such process" in reason:
        return f"strace cannot attach to process {pid}: it does not exist (any more)"
    if tracer is not None:
        return (f"strace cannot attach to process {pid}: it is already traced by process "
                f"{tracer} ({_comm(tracer)}); ptrace allows one tracer")
    from toolkit.probes.strace import ptrace_refusal_cause

    return f"strace cannot attach to process {pid}: {reason} ({ptrace_refusal_cause()})"


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return "?"


def check_traceable(pid: int, timeout_s: float = 10.0) -> None:
    """Raise TraceAttachError if strace cannot attach to ``pid``: a real attach, with no
    syscall traced, detached at once."""
    if not os.path.exists(f"/proc/{pid}"):
        raise TraceAttachError(f"strace cannot attach to process {pid}: it does not exist")
    window = StraceWindow([pid], syscalls=("none",), attach_timeout_s=timeout_s)
    try:
        window.start()
        proc = window._proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)  # detach cleanly before anything is killed
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    finally:
        window.cleanup()
