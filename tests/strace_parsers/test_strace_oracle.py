"""Oracle: real strace runs a threaded workload with `-C` (trace plus strace's own summary in
one output); the parser's calls and errors per syscall must equal strace's summary, for each
flag combination and each counting implementation (the C counter and the pure-Python block
scan, its fallback). And `-ff` per-process files agree with the same workload under `-f`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from strace_parsers import (
    NATIVE_COUNTER,
    Summary,
    SyscallEvent,
    SyscallStats,
    iter_events,
    summarize_events,
    summarize_paths,
)

THREADS = 4
ROUNDS = 15

# Threads (so that -f interleaves <unfinished ...>/<... resumed> lines), TCP over loopback
# (for -yy annotations), a signal, and calls that fail (EBADF, ENOENT).
WORKLOAD = f"""
import os, signal, socket, threading
signal.signal(signal.SIGUSR1, lambda *a: None)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
pairs = []
for _ in range({THREADS}):
    c = socket.create_connection(srv.getsockname()); s, _ = srv.accept(); pairs.append((c, s))
def worker(c, s):
    for k in range({ROUNDS}):
        s.send(b"x" * (k + 1)); s.sendmsg([b"hdr", b"payload"]); os.write(s.fileno(), b"w")
        want = k + 1 + 10 + 1
        while want > 0:
            want -= len(c.recv(65536))
    for _ in range(3):
        try:
            os.write(9999, b"z")
        except OSError:
            pass
    try:
        open("/nonexistent/writeshape")
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGUSR1)
ts = [threading.Thread(target=worker, args=p) for p in pairs]
for t in ts: t.start()
for t in ts: t.join()
"""

FLAG_SETS = {
    "f": ["-f"],
    "f-ttt-T": ["-f", "-ttt", "-T"],
    "f-tt": ["-f", "-tt"],
    "f-t": ["-f", "-t"],
    "f-r": ["-f", "-r"],
    "f-tt-r": ["-f", "-tt", "-r"],
    "f-y": ["-f", "-y"],
    "f-yy-T": ["-f", "-yy", "-T"],
    "f-xx-s8": ["-f", "-xx", "-s", "8", "-yy"],
    "f-X-raw": ["-f", "-X", "raw"],
    "f-X-verbose": ["-f", "-X", "verbose"],
    "f-n-i": ["-f", "-n", "-i"],
    "f-Y": ["-f", "-Y"],
    "f-k": ["-f", "-k"],
    "lead-runner": ["-f", "--seccomp-bpf", "-yy", "-e",
                    "trace=write,writev,sendto,sendmsg,sendmmsg,recvfrom,openat,kill"],
    "no-f": ["-ttt", "-T"],
}


IMPLEMENTATIONS = [
    pytest.param("c", marks=pytest.mark.skipif(not NATIVE_COUNTER, reason="C counter not built"),
                 id="c"),
    pytest.param("python", id="python"),
]


def _workload(tmp_path: Path) -> Path:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    return script


def _run_strace(args: list[str], tmp_path: Path) -> None:
    subprocess.run(["strace", *args, sys.executable, str(_workload(tmp_path))],
                   check=True, timeout=120, stdout=subprocess.DEVNULL)


def _assert_matches_strace_summary(path: Path, implementation: Any) -> None:
    summary = summarize_paths([str(path)], implementation=implementation)
    assert summary.implementation == implementation
    assert summary.unparsed == 0, summary.unparsed_examples
    assert summary.strace_summary, "strace -C printed no summary table"
    ours = {n: (s.calls, s.errors) for n, s in summary.syscalls.items() if s.calls}
    theirs = {n: (r.calls, r.errors) for n, r in summary.strace_summary.items()}
    assert ours == theirs
    # the streaming event path agrees with the counting path, slice by slice
    slow = summarize_events(iter_events(str(path)))
    assert tallies(slow) == tallies(summary)


def tallies(s: Summary) -> tuple[Any, ...]:
    """Every figure of every slice (all, per fd kind, per pid) of a Summary."""

    def table(t: dict[str, SyscallStats]) -> dict[str, tuple[Any, ...]]:
        return {n: (x.calls, x.errors, x.bytes, x.unreturned, x.requested_bytes,
                    x.requested_calls, x.iov_count, x.timed_calls, round(x.seconds, 9),
                    x.size_histogram)
                for n, x in t.items() if x.calls or x.unreturned}

    return (table(s.syscalls), {k: table(t) for k, t in s.by_fd_kind.items()},
            {k: table(t) for k, t in s.by_pid.items()})


@pytest.fixture(scope="module")
def flag_log(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The `-C` log of one flag set, made once for both implementations."""
    made: dict[str, Path] = {}

    def log_for(flag_set: str) -> Path:
        if flag_set not in made:
            tmp = tmp_path_factory.mktemp(f"oracle-{flag_set}")
            log = tmp / "trace.log"
            _run_strace(["-C", "-o", str(log), *FLAG_SETS[flag_set]], tmp)
            made[flag_set] = log
        return made[flag_set]

    return log_for


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("flag_set", list(FLAG_SETS))
def test_calls_and_errors_equal_strace_own_summary(flag_set: str, implementation: str,
                                                  flag_log: Callable[[str], Path]) -> None:
    log = flag_log(flag_set)
    if "-f" in FLAG_SETS[flag_set]:
        assert "resumed>" in log.read_text(errors="replace")  # threads really interleaved
    _assert_matches_strace_summary(log, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_stderr_output_with_pid_brackets_and_injected_messages(implementation: str,
                                                               tmp_path: Path) -> None:
    # no -o: trace, strace's own messages and the summary share stderr
    proc = subprocess.run(
        ["strace", "-f", "-C", sys.executable, str(_workload(tmp_path))],
        check=True, timeout=120, capture_output=True, text=True,
    )
    log = tmp_path / "stderr.log"
    log.write_text(proc.stderr)
    assert "[pid " in proc.stderr
    _assert_matches_strace_summary(log, implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_tcp_write_family_counts_are_exact_with_yy(implementation: Any, tmp_path: Path) -> None:
    log = tmp_path / "tcp.log"
    _run_strace(["-f", "--seccomp-bpf", "-yy", "-o", str(log), "-e",
                 "trace=write,writev,sendto,sendmsg,sendmmsg"], tmp_path)
    by_callable = summarize_paths([str(log)], fd_filter=lambda e: e.fd_proto in ("TCP", "TCPv6"))
    tcp = summarize_paths([str(log)], fd_proto={"TCP", "TCPv6"}, implementation=implementation)
    assert tallies(tcp) == tallies(by_callable)  # the runner's declarative form, same counts
    calls = {n: s.calls for n, s in tcp.syscalls.items()}
    assert calls == {"sendto": THREADS * ROUNDS, "sendmsg": THREADS * ROUNDS,
                     "write": THREADS * ROUNDS}
    assert tcp.syscalls["sendmsg"].requested_bytes == THREADS * ROUNDS * 10
    assert tcp.syscalls["sendmsg"].iov_count == THREADS * ROUNDS * 2
    by_kind = summarize_paths([str(log)], fd_kind="socket", implementation=implementation)
    assert by_kind.syscalls["sendto"].calls == THREADS * ROUNDS
    sends = [e for e in iter_events(str(log))
             if isinstance(e, SyscallEvent) and e.name == "sendto"]
    assert all(e.endpoint and "->" in e.endpoint and e.fd_kind == "socket" for e in sends)


def _deterministic(path: Path, implementation: Any) -> dict[str, tuple[int, int, int]]:
    s = summarize_paths([str(path)], implementation=implementation)
    assert s.unparsed == 0, s.unparsed_examples
    return {n: (st.calls, st.errors, st.bytes) for n, st in s.syscalls.items()
            if n in ("sendto", "sendmsg", "write", "kill", "socket", "connect")}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_ff_directory_agrees_with_f(implementation: Any, tmp_path: Path) -> None:
    one = tmp_path / "one.log"
    _run_strace(["-f", "-yy", "-o", str(one)], tmp_path)
    ff = tmp_path / "ff"
    ff.mkdir()
    _run_strace(["-ff", "-yy", "-o", str(ff / "p")], tmp_path)
    assert len(list(ff.iterdir())) > THREADS  # one file per thread
    assert _deterministic(ff, implementation) == _deterministic(one, implementation)
    per_pid = summarize_paths([str(ff)], implementation=implementation).by_pid
    assert len([p for p, t in per_pid.items() if "sendto" in t]) == THREADS
