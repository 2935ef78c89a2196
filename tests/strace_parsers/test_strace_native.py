"""The C counter (strace_parsers/_fastcount.c) against the event reader, on real strace logs
bent the ways a log can be: lines it leaves to Python in the middle of pending calls, reads
that split lines, a line longer than the read buffer, a cut-off end, CRLF line ends,
non-ASCII paths, -ff files. Every figure of every slice must be the event path's."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from test_strace_oracle import tallies

from strace_parsers import NATIVE_COUNTER, iter_events, summarize_events, summarize_paths
from strace_parsers import native as native_module

# Threads, so that -f interleaves <unfinished ...>/<... resumed>; gather writes (one with
# more iovecs than strace prints), a file with a non-ASCII name, failing calls.
WORKLOAD = """
import os, socket, threading
a, b = socket.socketpair()
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
c = socket.create_connection(srv.getsockname()); s, _ = srv.accept()
f = os.open("caf\\u00e9.log", os.O_WRONLY | os.O_CREAT, 0o600)
def reader(sock, n):
    while n > 0:
        n -= len(sock.recv(65536))
t1 = threading.Thread(target=reader, args=(c, 300 * (3 + 64 + 10)))
t2 = threading.Thread(target=reader, args=(b, 300))
t1.start(); t2.start()
for i in range(300):
    os.writev(s.fileno(), [b"hdr", b"x" * 64])
    s.sendmsg([b"a" * 7, b"b" * 3])
    a.send(b"z")
    os.write(f, b"line %d\\n" % i)
    if i % 50 == 0:
        os.writev(s.fileno(), [b"y"] * 40)
        s.send(b"q" * 0)
        try:
            os.write(9999, b"x")
        except OSError:
            pass
t1.join(); t2.join()
os.write(2, "done: caf\u00e9\\n".encode())  # program output amid the trace, not ASCII
"""
BIG_IOVS = 40 * (300 // 50)

# Not a module-wide pytestmark: the guard below must fail, not skip, when the build is missing.
native_only = pytest.mark.skipif(not NATIVE_COUNTER, reason="strace_parsers._fastcount not built")


def test_the_c_counter_is_built_where_a_compiler_is() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if shutil.which(compiler) is None or not headers.exists():
        pytest.skip(f"no C compiler ({compiler}) or no {headers}: the Python path runs alone")
    assert NATIVE_COUNTER, (
        "strace_parsers._fastcount is not importable although a compiler is installed: "
        "reinstall (`pip install -e .`) and read the build log"
    )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("native")
    script = tmp / "w.py"
    script.write_text(WORKLOAD)
    out = {}
    for name, flags in {"yy": ["-f", "-tt", "-T", "-yy"], "plain": ["-f"],
                        "y-ttt": ["-f", "-ttt", "-y"]}.items():
        out[name] = tmp / f"{name}.log"
        subprocess.run(["strace", *flags, "-o", str(out[name]), sys.executable, str(script)],
                       check=True, timeout=120, cwd=tmp)
    both = subprocess.run(["strace", "-f", "-yy", sys.executable, str(script)], check=True,
                          timeout=120, cwd=tmp, capture_output=True)  # trace and output on stderr
    out["stderr"] = tmp / "stderr.log"
    out["stderr"].write_bytes(both.stderr)
    ff = tmp / "ff"
    ff.mkdir()
    subprocess.run(["strace", "-ff", "-yy", "-o", str(ff / "p"), sys.executable, str(script)],
                   check=True, timeout=120, cwd=tmp)
    out["ff"] = ff
    return out


def _agree(path: Path, **kwargs: Any) -> Any:
    c = summarize_paths([str(path)], implementation="c", **kwargs)
    events = summarize_events(iter_events(str(path)))
    assert tallies(c) == tallies(events)
    assert (c.unparsed, c.truncated, c.orphan_resumed, c.signals, c.exits) == (
        events.unparsed, events.truncated, events.orphan_resumed, events.signals, events.exits)
    return c


@native_only
@pytest.mark.parametrize("name", ["yy", "plain", "y-ttt", "ff", "stderr"])
def test_real_logs_count_as_the_event_path_does(logs: dict[str, Path], name: str) -> None:
    c = _agree(logs[name])
    # the program's own line lands somewhere amid strace's (on stderr, not line by line)
    assert c.implementation == "c" and (c.unparsed > 0) == (name == "stderr")
    writev = c.syscalls["writev"]
    assert writev.calls == 300 + 300 // 50
    assert writev.requested_calls == 300  # the 40-iovec arrays are abbreviated: not summed
    assert writev.iov_count == 2 * 300 + BIG_IOVS
    assert c.syscalls["sendmsg"].requested_bytes == 300 * 10
    assert c.syscalls["write"].errors == 300 // 50
    if name == "yy":
        text = logs[name].read_text(errors="replace")
        assert "resumed>" in text and "caf\\303\\251.log>" in text  # an escaped annotation
        assert c.by_fd_kind["file"]["write"].calls == 300
        assert c.by_fd_kind["socket"]["sendto"].calls >= 300


@native_only
def test_lines_left_to_python_between_pending_calls(logs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """A line the C grammar does not take after every few lines: the pending calls move to
    the Python reader and back many times; nothing is lost or counted twice."""
    lines = logs["yy"].read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    mixed = tmp_path / "mixed.log"
    with mixed.open("w", encoding="utf-8", errors="surrogateescape") as out:
        for i, line in enumerate(lines):
            out.write(line + "\n")
            if i % 7 == 3:
                out.write("not strace output\n" if i % 2 else "\n")
    c = _agree(mixed)
    assert c.unparsed == sum(1 for i in range(len(lines)) if i % 7 == 3 and i % 2)


@native_only
def test_reads_that_split_lines_and_a_line_longer_than_the_buffer(
        logs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_module, "BLOCK_BYTES", 97)
    longest = max(map(len, logs["yy"].read_bytes().split(b"\n")))
    assert longest > 4 * 97
    _agree(logs["yy"])


@native_only
def test_program_output_in_the_trace_is_left_to_python(logs: dict[str, Path]) -> None:
    c = summarize_paths([str(logs["stderr"])], implementation="c")
    assert any("done: caf\u00e9" in ex["text"] for ex in c.unparsed_examples)
    assert "[pid " in logs["stderr"].read_text(errors="replace")


@native_only
def test_a_cut_off_end_and_crlf_line_ends(logs: dict[str, Path], tmp_path: Path) -> None:
    data = logs["yy"].read_bytes()
    cut = tmp_path / "cut.log"
    cut.write_bytes(data[: data.rindex(b"writev(") + 40])
    assert _agree(cut).truncated == 1
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(data.replace(b"\n", b"\r\n"))
    assert _agree(crlf).unparsed == 0


@native_only
def test_filters_select_the_same_rows_as_the_event_path(logs: dict[str, Path]) -> None:
    path = str(logs["yy"])
    pid = next(iter(summarize_paths([path]).by_pid))
    for kwargs in ({"pid": pid}, {"fd_kind": "file"}, {"fd_proto": "TCP"},
                   {"fd_proto": {"UNIX-STREAM"}}, {"fd_kind": "socket", "fd_proto": "TCP"}):
        c = summarize_paths([path], implementation="c", **kwargs)
        py = summarize_paths([path], implementation="python", **kwargs)
        assert tallies(c) == tallies(py), kwargs
    tcp = summarize_paths([path], fd_proto={"TCP", "TCPv6"})
    unix = summarize_paths([path], fd_proto="UNIX-STREAM")
    assert tcp.syscalls["sendmsg"].calls == 300 and "sendmsg" not in unix.syscalls
    assert unix.syscalls["sendto"].calls == 300
