"""A process and all its descendants, as psutil sees them now: pids, CPU time, memory, ports.

CPU time of a tree is the sum, over its live processes, of user + system time plus the
time of the children each one has reaped (the kernel adds a waited-for child's times,
its own reaped children included, to its parent's ``cutime``/``cstime``). So a worker
that exits and is reaped by its master keeps counting, and a zombie still counts with
its final times. What is lost: a process reaped outside the tree (its parent died first
and init, or a subreaper, waited for it). Differences between two readings are what a
window cost; the absolute value includes whatever the root's reaped children used
before the tree was first looked at.

RSS summed over processes counts pages shared between them (nginx's master and worker
share code and the body's page cache mappings) once per process; PSS splits each
shared page between its sharers, so summed PSS is the tree's real footprint.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil

from toolkit.targets.errors import TargetNotFound


@dataclass(frozen=True)
class TreeUsage:
    """One reading of a process tree."""

    pids: tuple[int, ...]  # the root first
    cpu_s: float  # user + system, live processes and the children they reaped
    rss_bytes: int  # summed RSS: shared pages counted once per process
    pss_bytes: int | None  # summed PSS (None: smaps_rollup unreadable for some process)
    taken_at_s: float  # time.monotonic() of the reading


class ProcessTree:
    """A root PID and its descendants, refreshed on every reading (workers come and go)."""

    def __init__(self, root_pid: int) -> None:
        try:
            self._root = psutil.Process(root_pid)
        except psutil.NoSuchProcess:
            raise TargetNotFound(f"no process has PID {root_pid}") from None
        except psutil.Error as exc:
            raise TargetNotFound(f"cannot read process {root_pid}: {exc}") from None
        self.root_pid = root_pid

    def alive(self) -> bool:
        """The root still runs (a zombie root does not count)."""
        try:
            return self._root.is_running() and self._root.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def processes(self) -> list[psutil.Process]:
        """The root and every descendant alive now (threads are part of their process)."""
        try:
            children = self._root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        except psutil.Error:
            children = []
        return [self._root, *children]

    def pids(self) -> tuple[int, ...]:
        return tuple(p.pid for p in self.processes())

    def usage(self, pss: bool = True) -> TreeUsage:
        """CPU, RSS and (unless ``pss`` is False) PSS of the tree. PSS walks every
        process's smaps: the memory sampler, which runs beside the timing rounds, skips it."""
        procs = self.processes()
        cpu = 0.0
        rss = 0
        pss_total: int | None = 0 if pss else None
        pids = []
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    mem = p.memory_info()
            except psutil.Error:
                continue  # exited between listing and reading
            pids.append(p.pid)
            cpu += t.user + t.system + t.children_user + t.children_system
            rss += mem.rss
            pss_total = _add_pss(p, pss_total)
        return TreeUsage(tuple(pids), cpu, rss, pss_total, time.monotonic())

    def cpu_s(self) -> float:
        return self.usage(pss=False).cpu_s

    def rss_bytes(self) -> int:
        return self.usage(pss=False).rss_bytes

    def listening_ports(self) -> set[int] | None:
        """TCP ports the tree listens on; None if the kernel would not say (another
        user's process without root)."""
        ports: set[int] = set()
        readable = False
        for p in self.processes():
            try:
                conns = p.net_connections(kind="tcp")
            except psutil.AccessDenied:
                continue
            except psutil.Error:
                continue
            readable = True
            ports.update(c.laddr.port for c in conns
                         if c.status == psutil.CONN_LISTEN and c.laddr)
        return ports if readable else None


def _add_pss(p: psutil.Process, total: int | None) -> int | None:
    if total is None:
        return None
    with contextlib.suppress(psutil.Error, AttributeError):
        return total + int(p.memory_full_info().pss)
    return None
