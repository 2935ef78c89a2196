"""A server to profile: any process tree, started from a command line or attached by PID.

    with ProcessTreeTarget.launch("nginx -c /tmp/n.conf", "http://127.0.0.1:8080/") as t:
        before = t.usage(); ...load...; after = t.usage()

A launched command runs in a session (and process group) of its own with its output in
a log file; ``launch`` returns once the URL answers HTTP/2 and ``stop`` ends the whole
tree: SIGTERM to the group and to every process of the tree or holding the lifeline
(see lifeline.py), SIGKILL to whatever is left after the grace period. An attached
server is never signalled. Every failure is one TargetError line, with nothing left
running that writeshape started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from toolkit.clients.target import parse_target
from toolkit.errors import UsageError
from toolkit.targets.errors import (
    TargetError,
    TargetNotFound,
    TargetNotTraceable,
    TargetStartError,
)
from toolkit.targets.lifeline import Lifeline
from toolkit.targets.readiness import NotHttp2, probe_http2, wait_http2
from toolkit.targets.tree import ProcessTree, TreeUsage

_PR_SET_PDEATHSIG = 1
# Targets started and not yet stopped: stopped at interpreter exit, as the parent-death
# signal does not cover everything (the kernel clears it when a process switches user, as
# h2o does when started as root). A writeshape killed by SIGKILL leaves such servers.
_RUNNING: set[ProcessTreeTarget] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for target in list(_RUNNING):
        with contextlib.suppress(Exception):
            target.stop(timeout_s=5.0)


def _pdeathsig() -> None:
    """In the child before exec: SIGTERM when writeshape dies, even by SIGKILL. The
    kernel sends it when the *thread* that forked exits, so it is set only for commands
    started from the main thread (see launch)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def split_command(command: str | Sequence[str]) -> list[str]:
    """A command line split like a POSIX shell would (no shell runs: write
    ``sh -c '...'`` for pipes or variables)."""
    try:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse --cmd {command!r}: {exc}") from None
    if not argv:
        raise UsageError("--cmd is empty")
    return argv


class ProcessTreeTarget:
    """A server process tree and the URL it answers on. Build with launch() or attach()."""

    def __init__(self, tree: ProcessTree, url: str, *, owned: bool,
                 proc: subprocess.Popen[bytes] | None = None, lifeline: Lifeline | None = None,
                 log_path: str | None = None, label: str = "") -> None:
        self.tree = tree
        self.url = url
        self.owned = owned  # started by writeshape, so stopped by it
        self.label = label or _program_name(tree)
        self.log_path = log_path
        self.returncode: int | None = None
        self._proc = proc
        self._lifeline = lifeline
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def launch(cls, command: str | Sequence[str], url: str, *, start_timeout_s: float = 30.0,
               cwd: str | None = None, env: Mapping[str, str] | None = None,
               label: str = "") -> ProcessTreeTarget:
        """Start ``command``, wait until ``url`` answers HTTP/2; stop it and raise
        TargetStartError if it exits first or the deadline passes."""
        parse_target(url)  # a bad URL is a UsageError before anything starts
        argv = split_command(command)
        tmp = tempfile.TemporaryDirectory(prefix="writeshape-target-")
        log_path = str(Path(tmp.name) / "output.log")
        lifeline = Lifeline()
        main = threading.current_thread() is threading.main_thread()
        try:
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, pass_fds=(lifeline.child_fd,), cwd=cwd,
                    env=None if env is None else dict(env),
                    preexec_fn=_pdeathsig if main else None)
        except OSError as exc:
            lifeline.close()
            tmp.cleanup()
            raise TargetStartError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
        lifeline.started()
        target = cls(ProcessTree(proc.pid), url, owned=True, proc=proc, lifeline=lifeline,
                     log_path=log_path, label=label or Path(argv[0]).name)
        target._tmp = tmp
        _RUNNING.add(target)
        try:
            target._wait_ready(start_timeout_s, shlex.join(argv))
        except BaseException:
            target.stop()
            target.cleanup()
            raise
        return target

    def _wait_ready(self, timeout_s: float, shown: str) -> None:
        assert self._proc is not None
        reason = wait_http2(self.url, timeout_s=timeout_s,
                            alive=lambda: self._proc is not None and self._proc.poll() is None)
        code = self._proc.poll()
        if reason is None and code is None:
            return
        tail = self.log_tail()
        log = f"; its output: {tail}" if tail else ""
        if code is not None:
            left = self._stop_leftovers()
            stray = (f" and left {left} process(es) running (it daemonized?): stopped them; run "
                     "it in the foreground (nginx: -g 'daemon off;', h2o: -m worker)"
                     if left else "")
            before = f" before {self.url} answered HTTP/2" if reason else ""
            raise TargetStartError(f"{shown!r} exited with status {code}{before}{stray}{log}")
        if isinstance(reason, NotHttp2):
            raise TargetStartError(f"{reason}: stopped {shown!r}{log}")
        raise TargetStartError(f"{self.url} did not answer HTTP/2 within {timeout_s:g} s "
                               f"({reason}): stopped {shown!r}{log}")

    @classmethod
    def attach(cls, pid: int, url: str, *, check_url: bool = True, check_trace: bool = True,
               timeout_s: float = 10.0) -> ProcessTreeTarget:
        """A running server by PID; it is never stopped by writeshape. ``check_trace``:
        fail now if strace could not attach to it (TargetNotTraceable)."""
        parse_target(url)
        if pid <= 0:
            raise TargetNotFound(f"no process has PID {pid}")
        tree = ProcessTree(pid)
        if not tree.alive():
            raise TargetNotFound(f"process {pid} has exited")
        if check_trace:
            from toolkit.probes.strace_attach import TraceAttachError, check_traceable

            try:
                check_traceable(pid)
            except TraceAttachError as exc:
                raise TargetNotTraceable(str(exc)) from None
        target = cls(tree, url, owned=False)
        if check_url:
            reason = wait_http2(url, timeout_s=timeout_s, alive=tree.alive)
            if reason is not None:
                raise TargetError(f"{url} does not answer HTTP/2 ({reason}); is process {pid} "
                                  "the server behind it?")
            target.check_port()
        return target

    # --- what it exposes ----------------------------------------------------------------

    @property
    def root_pid(self) -> int:
        return self.tree.root_pid

    def pids(self) -> tuple[int, ...]:
        """The root and all its descendants now."""
        return self.tree.pids()

    def usage(self, pss: bool = True) -> TreeUsage:
        return self.tree.usage(pss)

    def cpu_s(self) -> float:
        return self.tree.cpu_s()

    def rss_bytes(self) -> int:
        return self.tree.rss_bytes()

    @property
    def port(self) -> int:
        """The port the URL names (check_port() verifies the tree listens there)."""
        return parse_target(self.url).port

    def listening_ports(self) -> set[int] | None:
        return self.tree.listening_ports()

    def check_port(self) -> None:
        """TargetError if the tree provably does not listen on the URL's port (a URL of
        another server would profile the wrong process)."""
        ports = self.tree.listening_ports()
        if ports is not None and self.port not in ports:
            shown = ", ".join(map(str, sorted(ports))) or "no TCP port"
            raise TargetError(f"process {self.root_pid} ({self.label}) does not listen on port "
                              f"{self.port} of {self.url}: it listens on {shown}")

    def answers(self) -> bool:
        return probe_http2(self.url) is None

    def log_tail(self, lines: int = 3) -> str:
        if self.log_path is None:
            return ""
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(kept[-lines:])[-400:]

    # --- stopping -----------------------------------------------------------------------

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM the whole tree, SIGKILL what is left after ``timeout_s``; returns the
        root's exit status. An attached target is left alone (returns None)."""
        if not self.owned or self._proc is None:
            return self.returncode
        _RUNNING.discard(self)
        if self._proc.poll() is not None and self._gone(0.0):
            self.returncode = self._proc.returncode  # already stopped (or exited alone)
            return self.returncode
        members = self._members()  # before any exits: orphans lose their link to the root
        self._signal(members, signal.SIGTERM)
        if not self._wait_gone(members, timeout_s):
            members = list({p.pid: p for p in [*members, *self._members()]}.values())
            self._signal(members, signal.SIGKILL)
            self._wait_gone(members, 5.0)
        if self._proc.poll() is None or not self._gone(0.0):
            raise TargetError(f"processes of {self.label} survived SIGKILL: "
                              f"{self._lifeline_holders() or [self.root_pid]}")
        self.returncode = self._proc.returncode
        return self.returncode

    def _wait_gone(self, members: list[psutil.Process], timeout_s: float) -> bool:
        """Wait for the root (reaped through Popen, which keeps its status) and for the
        rest of the tree and the lifeline; True if all went in time."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout_s)
        others = [p for p in members if p.pid != self.root_pid]
        _, alive = psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
        return self._proc.poll() is not None and not alive and self._gone(
            max(0.05, deadline - time.monotonic()))

    def _members(self) -> list[psutil.Process]:
        """The tree plus whatever holds the lifeline (left the tree by daemonizing)."""
        procs = {p.pid: p for p in self.tree.processes()}
        for pid in self._lifeline_holders():
            with contextlib.suppress(psutil.Error):
                procs.setdefault(pid, psutil.Process(pid))
        return list(procs.values())

    def _lifeline_holders(self) -> list[int]:
        return self._lifeline.holders() if self._lifeline is not None else []

    def _signal(self, procs: list[psutil.Process], sig: signal.Signals) -> None:
        """One signal per process: the command's group at once, then each member that left
        it (a second SIGTERM can cut a server's graceful shutdown short)."""
        assert self._proc is not None
        group = None
        if self._proc.returncode is None:  # once reaped, its pid (and group id) may be reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)  # the session's group, as the command made it
                group = self._proc.pid
        for p in procs:
            with contextlib.suppress(psutil.Error, OSError):
                if group is None or os.getpgid(p.pid) != group:
                    p.send_signal(sig)

    def _gone(self, timeout_s: float) -> bool:
        return self._lifeline is None or self._lifeline.all_exited(timeout_s)

    def _stop_leftovers(self) -> int:
        """After the root exited during start-up: stop what it left behind; how many."""
        left = [p for p in self._members() if p.pid != self.root_pid]
        if left:
            self._signal(left, signal.SIGTERM)
            _, alive = psutil.wait_procs(left, timeout=5)
            self._signal(alive, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
        return len(left)

    def cleanup(self) -> None:
        """Remove the log folder (after stop); the log is gone with it."""
        if self._lifeline is not None:
            self._lifeline.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ProcessTreeTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()


def _program_name(tree: ProcessTree) -> str:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(tree.root_pid).name()
    return str(tree.root_pid)
