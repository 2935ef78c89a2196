"""Any server as a process tree: started from a command or attached by PID, for real.

Every bad input ends in one TargetError line and nothing left running that writeshape
started (checked by looking for the processes afterwards)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from nghttpd_fixtures import free_port

from toolkit.clients.fetch import fetch
from toolkit.errors import WriteshapeError
from toolkit.targets import (
    ProcessTreeTarget,
    TargetError,
    TargetNotFound,
    TargetNotTraceable,
    TargetStartError,
)

SERVE = [sys.executable, "-m", "toolkit", "serve", "--strategy", "writev", "--body-size", "1000"]


def _serve_cmd(port: int, *extra: str) -> str:
    return shlex.join([*SERVE, "--port", str(port), *extra])


def _running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


def test_launch_exposes_the_tree_and_stops_all_of_it() -> None:
    port = free_port()
    # sh burns CPU in a child it waits for, then becomes the server (exec keeps the pid
    # and the reaped child's CPU time), which starts a child of its own.
    burn = f"{sys.executable} -c 'import time; t=time.process_time(); " \
           "exec(\"while time.process_time()-t<0.3: pass\")'"
    keeper = f"{sys.executable} -c 'import time; time.sleep(600)'"
    cmd = ["sh", "-c", f"{burn}; {keeper} & exec {_serve_cmd(port)}"]
    url = f"http://127.0.0.1:{port}/"
    with ProcessTreeTarget.launch(cmd, url, label="serve") as target:
        pids = list(target.pids())
        assert len(pids) == 2 and pids[0] == target.root_pid
        assert target.listening_ports() == {port} and target.port == port
        usage = target.usage()
        assert usage.cpu_s >= 0.3  # the exited, reaped child's CPU is in the tree's
        assert usage.rss_bytes > 10 << 20 and usage.pss_bytes and usage.pss_bytes <= usage.rss_bytes
        assert len(fetch(url, "/").body) == 1000
        target.check_port()
    assert target.returncode == 0  # writeshape serve exits 0 on SIGTERM
    assert _running(pids) == []


def test_stop_kills_what_ignores_sigterm() -> None:
    port = free_port()
    stubborn = f"{sys.executable} -c 'import signal, time; " \
               "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"
    cmd = ["sh", "-c", f"{stubborn} & exec {_serve_cmd(port)}"]
    target = ProcessTreeTarget.launch(cmd, f"http://127.0.0.1:{port}/")
    pids = list(target.pids())
    t0 = time.monotonic()
    target.stop(timeout_s=1.0)
    target.cleanup()
    assert time.monotonic() - t0 < 5
    assert _running(pids) == []


def test_a_url_that_never_answers() -> None:
    port = free_port()
    cmd = [sys.executable, "-c", "import time; time.sleep(600)"]
    with pytest.raises(TargetStartError) as err:
        ProcessTreeTarget.launch(cmd, f"http://127.0.0.1:{port}/", start_timeout_s=1.0)
    line = _one_line(err.value)
    assert "did not answer HTTP/2 within 1 s" in line and "refused" in line
    assert not [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] == cmd]


def test_a_server_that_answers_http1_is_named_as_such() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with pytest.raises(TargetStartError) as err:
        ProcessTreeTarget.launch(cmd, f"http://127.0.0.1:{port}/", start_timeout_s=2.0)
    assert "not HTTP/2" in _one_line(err.value)


def test_a_command_that_exits_at_once() -> None:
    with pytest.raises(TargetStartError) as err:
        ProcessTreeTarget.launch("sh -c 'echo no config >&2; exit 3'", "http://127.0.0.1:1/")
    line = _one_line(err.value)
    assert "exited with status 3" in line and "no config" in line


def test_a_command_that_daemonizes_is_stopped_anyway() -> None:
    # The first process exits at once; its child, in a session of its own, lives on.
    port = free_port()
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
    with pytest.raises(TargetStartError) as err:
        ProcessTreeTarget.launch([sys.executable, "-c", code], f"http://127.0.0.1:{port}/")
    line = _one_line(err.value)
    assert "exited with status 0" in line and "left 1 process(es) running" in line
    assert not [p for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and code in p.info["cmdline"]]


def test_a_program_that_does_not_exist() -> None:
    with pytest.raises(TargetStartError) as err:
        ProcessTreeTarget.launch("no-such-server-xyz --port 1", "http://127.0.0.1:1/")
    assert "cannot run 'no-such-server-xyz'" in _one_line(err.value)


@pytest.fixture
def running_server():
    """A writeshape server started outside writeshape's targets (as a user would)."""
    port = free_port()
    proc = subprocess.Popen(shlex.split(_serve_cmd(port)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and b"listening" in proc.stdout.readline()
    yield proc, f"http://127.0.0.1:{port}/"
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)


def test_attach_by_pid_never_stops_the_server(running_server) -> None:
    proc, url = running_server
    with ProcessTreeTarget.attach(proc.pid, url) as target:
        assert target.pids() == (proc.pid,) and not target.owned
        assert target.usage().cpu_s > 0
    assert proc.poll() is None
    assert len(fetch(url, "/").body) == 1000


def test_attach_to_a_pid_that_does_not_exist() -> None:
    pid = 2**22 + 12345  # above pid_max's usual 4194304
    with pytest.raises(TargetNotFound) as err:
        ProcessTreeTarget.attach(pid, "http://127.0.0.1:1/")
    assert f"no process has PID {pid}" in _one_line(err.value)


def test_attach_with_a_url_the_pid_does_not_serve(running_server) -> None:
    proc, _ = running_server
    other = free_port()
    with subprocess.Popen(shlex.split(_serve_cmd(other)), stdout=subprocess.PIPE) as second:
        assert second.stdout is not None and second.stdout.readline()
        try:
            with pytest.raises(TargetError) as err:
                ProcessTreeTarget.attach(proc.pid, f"http://127.0.0.1:{other}/")
        finally:
            second.terminate()
    assert f"does not listen on port {other}" in _one_line(err.value)


def test_attach_to_a_pid_that_cannot_be_traced(running_server) -> None:
    proc, url = running_server
    # ptrace allows one tracer: a process already under strace cannot be attached to.
    tracer = subprocess.Popen(["strace", "-qq", "-o", os.devnull, "-p", str(proc.pid)],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "TracerPid:\t0" in Path(f"/proc/{proc.pid}/status").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(TargetNotTraceable) as err:
            ProcessTreeTarget.attach(proc.pid, url)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(10)
    line = _one_line(err.value)
    assert f"already traced by process {tracer.pid} (strace)" in line
    assert isinstance(err.value, WriteshapeError)


def test_a_program_that_exits_without_stop_leaves_nothing_running() -> None:
    # h2o started as root switches to nobody, which clears the parent-death signal: the
    # exit handler stops it.
    code = ("from toolkit.targets import ReferenceServer\n"
            "srv = ReferenceServer('h2o').start()\n"
            "print(*srv.target.pids(), flush=True)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) >= 2 and _running(pids) == []
