"""perf's tracepoint counts against strace's, on the same window of the same load: writeshape's
own server (split: two sendmsg-family calls per frame) and nginx. perf counts every fd,
strace -yy only TCP sockets: the difference is what strace saw on other fds."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from nghttpd_fixtures import free_port

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.probes.perf_syscalls import PerfWindow
from toolkit.probes.strace_attach import StraceWindow
from toolkit.probes.tcp_segments import wait_server_closed
from toolkit.probes.window import WindowCounts
from toolkit.targets import ProcessTreeTarget, ReferenceServer

REQUESTS = 400


def _both_counters(target: ProcessTreeTarget) -> tuple[WindowCounts, WindowCounts]:
    """perf around strace around the load; the server's closing writes inside both."""
    pids = target.pids()
    with PerfWindow(pids) as perf, StraceWindow(pids) as strace:
        load = run_load(LoadConfig(url=target.url, requests=REQUESTS, connections=2,
                                   streams=4, insecure=True))
        assert (load.requests, load.failures) == (REQUESTS, 0)
        assert wait_server_closed(target.port)
    assert perf.counts is not None and strace.counts is not None
    return perf.counts, strace.counts


def _agree(perf: WindowCounts, strace: WindowCounts) -> None:
    tcp = strace.total_calls
    every_fd = tcp + (strace.other_fd_calls or 0)
    assert tcp > REQUESTS
    assert abs(perf.total_calls - tcp) <= 0.02 * tcp, (perf.calls, strace.calls)
    # perf's window holds strace's: it can only see more, and then only on other fds.
    assert every_fd <= perf.total_calls <= every_fd + 0.01 * tcp, (perf.calls, strace.calls,
                                                                   strace.other_fd_by_syscall)
    assert set(strace.calls) <= set(perf.calls)


def test_perf_agrees_with_strace_on_writeshape_split() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "toolkit", "serve", "--strategy", "split", "--port", str(port),
           "--body-size", "16384"]
    with ProcessTreeTarget.launch(shlex.join(cmd), f"http://127.0.0.1:{port}/") as target:
        perf, strace = _both_counters(target)
    _agree(perf, strace)
    assert strace.calls.keys() == {"sendto"}  # header and payload: one send each


@pytest.mark.parametrize("transport", ["h2c", "h2"])
def test_perf_agrees_with_strace_on_nginx(transport: str) -> None:
    with ReferenceServer("nginx", transport=transport, body_bytes=16384) as srv:
        assert srv.target is not None
        perf, strace = _both_counters(srv.target)
    _agree(perf, strace)
    assert strace.other_fd_calls == 0  # access_log off: nothing but the sockets


def test_both_counters_follow_processes_forked_inside_the_window() -> None:
    # perf -p opens inherited counters, strace -f follows forks: three children forked
    # after the window opened write 100 times each (to a pipe: not TCP, so strace puts
    # them among the other fds, and perf counts them like any write).
    code = ("import os, time\ntime.sleep(0.3)\nfor _ in range(3):\n"
            "    if os.fork() == 0:\n        [os.write(1, b'x') for _ in range(100)]\n"
            "        os._exit(0)\n    os.wait()\n")
    counts = {}
    for window_type in (PerfWindow, StraceWindow):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        with window_type([proc.pid]) as window:
            out, _ = proc.communicate(timeout=30)
        assert out == b"x" * 300
        counts[window_type.__name__] = window.counts
    assert counts["PerfWindow"].calls == {"write": 300}
    strace = counts["StraceWindow"]
    assert strace.calls == {} and strace.other_fd_by_syscall == {"write": 300}
