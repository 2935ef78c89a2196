"""`writeshape profile` and `compare --servers`: any server measured like a strategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from processes import tagged_processes

ROW_FIELDS = ("strategy transport body_bytes requests failures req_per_s latency_ms_p99 "
              "cpu_s_per_request write_syscalls_per_response bytes_per_write_syscall "
              "tls_records_per_response tcp_data_segments_per_response label server rounds "
              "ratios verdicts cv memory").split()


def _writeshape(*args: str, timeout: float = 600, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_profiling_writeshapes_own_server_gives_compares_writes(tmp_path: Path) -> None:
    """The acceptance check: split's writes per response, profiled from outside (strace
    attached to the tree) and compared (the server under strace -f from its start)."""
    port = _free_port()
    out = tmp_path / "p.json"
    proc = _writeshape("profile", "--cmd", f"writeshape serve --strategy split --port {port}",
                       "--url", f"http://127.0.0.1:{port}/", "--repeat", "3", "--requests",
                       "200", "--counting-requests", "200", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    (row,) = doc["results"]
    for name in ROW_FIELDS:
        assert name in row, name
    assert row["strategy"] is None and row["server"] == "writeshape"
    assert row["body_bytes"] == 1 << 20 and row["failures"] == 0 and len(row["rounds"]) == 3
    assert set(doc["meta"]["unmeasured"]) >= {"alloc_bytes_per_response",
                                              "live_heap_delta_bytes"}
    assert row["alloc_bytes_per_response"] is None and row["live_heap_delta_bytes"] is None
    cmp = tmp_path / "c.json"
    proc = _writeshape("compare", "--strategies", "split", "--transports", "h2c",
                       "--body-sizes", "1MiB", "--repeat", "1", "--requests", "200",
                       "--counting-requests", "200", "--no-alloc", "--json", str(cmp))
    assert proc.returncode == 0, proc.stderr
    (split,) = json.loads(cmp.read_text())["results"]
    assert row["write_syscalls_per_response"] == pytest.approx(
        split["write_syscalls_per_response"], rel=0.02)
    # Nothing writeshape started is left: the port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("transport", ["h2c", "h2"])
def test_profile_a_reference_server_with_perf_beside_strace(tmp_path: Path,
                                                            transport: str) -> None:
    out = tmp_path / "nginx.json"
    proc = _writeshape("profile", "--reference", "nginx", "--transport", transport,
                       "--body-size", "64KiB", "--repeat", "3", "--requests", "400",
                       "--counter", "perf", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(out.read_text())["results"]
    assert row["server"] == "nginx" and row["strategy"] is None
    assert row["transport"] == transport and row["failures"] == 0
    # perf in the timing rounds and strace in the counting run count the same writes.
    assert row["perf_write_syscalls_per_response"] == pytest.approx(
        row["write_syscalls_per_response"], rel=0.05)
    assert row["tcp_data_segments_per_response"] > 0
    if transport == "h2":  # counted on the client side, from the ciphertext
        assert row["tls_records_per_response"] >= 4  # 64 KiB in records of 16 KiB at most
    else:
        assert row["tls_records_per_response"] is None


def test_compare_puts_reference_servers_beside_the_strategies(tmp_path: Path) -> None:
    out = tmp_path / "servers.json"
    proc = _writeshape("compare", "--strategies", "single", "--servers", "nginx,h2o,nghttpd",
                       "--transports", "h2c", "--body-sizes", "256KiB", "--repeat", "2",
                       "--requests", "200", "--counting-requests", "40", "--no-alloc",
                       "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {r["label"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"single", "nginx", "h2o", "nghttpd"}
    for name in ("nginx", "h2o", "nghttpd"):
        row: Any = rows[name]
        assert row["server"] == name and row["strategy"] is None
        assert set(row["ratios"]) == {"req_per_s", "latency_ms_p99", "cpu_s_per_request"}
        assert row["write_syscalls_per_response"] > 0
    assert rows["single"]["server"] == "writeshape"
    assert "nginx" in proc.stdout and "nghttpd" in proc.stdout


def test_bad_targets_are_one_line_and_leave_nothing_running(tmp_path: Path) -> None:
    tag = f"profile-bad-{os.getpid()}"
    env = dict(os.environ, WRITESHAPE_TEST_TAG=tag)
    port = _free_port()
    t0 = time.monotonic()
    proc = _writeshape("profile", "--cmd", "sleep 60", "--url", f"http://127.0.0.1:{port}/",
                       "--start-timeout", "3", env=env)
    _one_line(proc, "sleep")
    assert time.monotonic() - t0 < 30
    proc = _writeshape("profile", "--cmd", "true", "--url", f"http://127.0.0.1:{port}/",
                       env=env)
    _one_line(proc, "exited")
    proc = _writeshape("profile", "--pid", "999999999", "--url", f"http://127.0.0.1:{port}/")
    _one_line(proc, "999999999")
    proc = _writeshape("profile", "--url", f"http://127.0.0.1:{port}/")
    _one_line(proc, "give one target")
    proc = _writeshape("profile", "--reference", "apache")
    _one_line(proc, "unknown server 'apache'")
    time.sleep(0.5)
    assert not [p.cmdline() for p in tagged_processes(tag) if "sleep" in " ".join(p.cmdline())]


def test_a_reference_server_that_is_not_installed_is_named() -> None:
    """nginx hidden for real: in a mount namespace of its own, /dev/null (not executable)
    is bound over the binary, so the command sees a machine without nginx."""
    nginx = subprocess.run(["sh", "-c", "command -v nginx || echo /usr/sbin/nginx"],
                           capture_output=True, text=True, check=True).stdout.strip()
    script = (f"mount --bind /dev/null {nginx} && exec {sys.executable} -m toolkit "
              "profile --reference nginx")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], capture_output=True, text=True, timeout=120)
    _one_line(proc, "apt-get install nginx")


def test_profile_attached_by_pid_leaves_the_server_running(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", "--strategy",
                               "writev", "--port", str(port), "--body-size", "64KiB"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        out = tmp_path / "pid.json"
        proc = _writeshape("profile", "--pid", str(server.pid), "--url",
                           f"http://127.0.0.1:{port}/", "--repeat", "2", "--requests", "200",
                           "--counting-requests", "40", "--json", str(out))
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(out.read_text())["results"]
        assert row["body_bytes"] == 64 << 10 and row["write_syscalls_per_response"] > 0
        assert server.poll() is None, "profile --pid must never stop the server"
    finally:
        server.terminate()
        server.wait(30)
