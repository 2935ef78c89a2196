"""Count a running process tree's write-family syscalls with perf's kernel tracepoints.

    with PerfWindow(target.pids()) as window:   # counting once perf acknowledged "enable"
        run the load
    counts = window.counts

``perf stat -e syscalls:sys_enter_write,... -p PID,PID`` opens one counter per thread of
the listed processes (children and threads they create later inherit them, and their
counts are summed in); the counters only increment in the kernel, so the tree runs at
close to full speed and this can run inside timing rounds. perf starts with its events
disabled (``-D -1``) and is switched on and off through a control FIFO that acknowledges
each command, so the window is exactly the load's.

What perf cannot do: tell a socket from a file or a pipe (a tracepoint count has no fd
kind), nor say how many bytes went out or how many calls failed. A server that writes an
access log, or wakes a thread through a pipe, counts those writes too: compare with
StraceWindow's ``other_fd_calls`` once to know how much that is for a given server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from toolkit.errors import PermissionProblem, WriteshapeError, find_tool
from toolkit.probes.window import WRITE_SYSCALLS, WindowCounts, live_pids, spawn_counter

# strace's syscall names -> the kernel's tracepoint names where they differ.
_TRACEPOINT_NAME = {"sendfile": "sendfile64"}


class PerfError(WriteshapeError):
    """perf could not count (not permitted, no tracepoints, a process gone)."""


def tracepoint(syscall: str) -> str:
    return f"syscalls:sys_enter_{_TRACEPOINT_NAME.get(syscall, syscall)}"


def find_perf() -> str:
    return find_tool("perf", "linux-perf")


def perf_stat_argv(pids: Sequence[int], out_path: str, ctl: str, ack: str,
                   syscalls: Sequence[str] = WRITE_SYSCALLS) -> list[str]:
    events = ",".join(tracepoint(s) for s in syscalls)
    return [find_perf(), "stat", "-x", ",", "-o", out_path, "-D", "-1",
            "--control", f"fifo:{ctl},{ack}", "-e", events,
            "-p", ",".join(str(p) for p in pids)]


def parse_perf_csv(text: str, syscalls: Sequence[str] = WRITE_SYSCALLS
                   ) -> tuple[dict[str, int], list[str]]:
    """``perf stat -x ,`` output -> (calls per syscall, notes on events not counted).

    A line is ``value,unit,event,run time,percentage,...``; the value is a number or
    ``<not counted>`` / ``<not supported>``."""
    by_event = {tracepoint(s): s for s in syscalls}
    calls: dict[str, int] = {}
    notes: list[str] = []
    for line in text.splitlines():
        cols = line.split(",")
        if len(cols) < 3 or cols[2] not in by_event:
            continue
        name = by_event[cols[2]]
        try:
            calls[name] = int(cols[0])
        except ValueError:
            notes.append(f"perf: {cols[2]} {cols[0].strip()}")
    return calls, notes


class PerfWindow:
    """perf stat counting write-family tracepoints of ``pids`` between start() and stop()."""

    def __init__(self, pids: Sequence[int], *, syscalls: Sequence[str] = WRITE_SYSCALLS,
                 start_timeout_s: float = 10.0) -> None:
        self.pids = live_pids(pids)
        if not self.pids:
            raise PerfError(f"no process to count with perf: {list(pids)} all exited")
        self.syscalls = tuple(syscalls)
        self.start_timeout_s = start_timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="writeshape-perf-")
        base = Path(self._tmp.name)
        self.out_path, self.err_path = str(base / "stat.csv"), str(base / "stderr")
        self._ctl_path, self._ack_path = str(base / "ctl"), str(base / "ack")
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl = self._ack = -1
        self._t0 = 0.0
        self.counts: WindowCounts | None = None

    def start(self) -> PerfWindow:
        """Attach and enable; once more with the survivors if a pid exited meanwhile."""
        try:
            return self._start()
        except PerfError as exc:
            survivors = live_pids(self.pids)
            if "exited" not in str(exc) or not survivors or survivors == self.pids:
                raise
        self.cleanup()
        self.__init__(survivors, syscalls=self.syscalls,  # type: ignore[misc]
                      start_timeout_s=self.start_timeout_s)
        return self._start()

    def _start(self) -> PerfWindow:
        os.mkfifo(self._ctl_path)
        os.mkfifo(self._ack_path)
        # Our read end of the ack FIFO first: perf's open for writing then never blocks.
        self._ack = os.open(self._ack_path, os.O_RDONLY | os.O_NONBLOCK)
        argv = perf_stat_argv(self.pids, self.out_path, self._ctl_path, self._ack_path,
                              self.syscalls)
        self._proc = spawn_counter(argv, self.err_path)
        try:
            self._open_ctl()
            self._command("enable")
        except BaseException:
            self.cleanup()
            raise
        self._t0 = time.monotonic()
        return self

    def _open_ctl(self) -> None:
        """Open the control FIFO once perf reads it (it does after opening its counters)."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                self._ctl = os.open(self._ctl_path, os.O_WRONLY | os.O_NONBLOCK)
                return
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            if self._proc.poll() is not None:
                raise self._failure()
            if time.monotonic() > deadline:
                raise PerfError(f"perf did not start counting within {self.start_timeout_s} s")
            time.sleep(0.01)

    def _command(self, cmd: str) -> None:
        """Send enable/disable and wait for perf's "ack": the counters switched."""
        assert self._proc is not None
        os.write(self._ctl, cmd.encode() + b"\n")
        deadline = time.monotonic() + self.start_timeout_s
        got = b""
        while b"ack" not in got:
            ready, _, _ = select.select([self._ack], [], [], 0.05)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    got += os.read(self._ack, 64)
            if self._proc.poll() is not None:
                raise self._failure()
            if time.monotonic() > deadline:
                raise PerfError(f"perf did not acknowledge {cmd!r}")

    def _failure(self) -> WriteshapeError:
        text = Path(self.err_path).read_text(errors="replace").strip()
        if "Access to performance monitoring" in text or "Permission denied" in text:
            return PermissionProblem(
                "perf may not count tracepoints here: run as root or set "
                "kernel.perf_event_paranoid=-1 (or use --counter strace)")
        if "Problems finding threads" in text or "No such process" in text:
            gone = sorted(set(self.pids) - set(live_pids(self.pids)))
            return PerfError(f"perf could not attach: process(es) {gone or self.pids} exited")
        last = text.splitlines()[-1] if text else f"exit status {self._proc_code()}"
        return PerfError(f"perf stat failed: {last}")

    def _proc_code(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    def stop(self) -> WindowCounts:
        """Disable the counters, end perf (SIGINT prints the totals) and read them."""
        if self.counts is not None:
            return self.counts
        if self._proc is None:
            raise WriteshapeError("the perf window was never started")
        self._command("disable")
        duration = time.monotonic() - self._t0
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        calls, notes = parse_perf_csv(Path(self.out_path).read_text(errors="replace"),
                                      self.syscalls)
        if not calls:
            raise PerfError(f"perf printed no counts: {Path(self.err_path).read_text()[-300:]}")
        self.counts = WindowCounts(
            counter="perf", scope="any-fd", pids=self.pids, duration_s=duration,
            calls={n: c for n, c in sorted(calls.items()) if c}, notes=notes)
        return self.counts

    def cleanup(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        for fd in (self._ctl, self._ack):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ctl = self._ack = -1
        self._tmp.cleanup()

    def __enter__(self) -> PerfWindow:
        return self.start()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.stop()
        self.cleanup()
