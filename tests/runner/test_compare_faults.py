"""The comparison under faults and in its other modes: a server killed mid-run, the
review preset, and the network-namespace lab."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import seccomp_deny

from toolkit.probes.strace import ptrace_refusal_cause


def _compare(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", "compare", *args],
                          capture_output=True, text=True, timeout=timeout)


def _serving(p: psutil.Process) -> bool:
    try:
        established = [c for c in p.net_connections("tcp") if c.status == "ESTABLISHED"]
    except psutil.Error:
        return False
    return len(established) >= 4  # the load's connections are up


def test_a_server_killed_mid_run_fails_its_cell_and_the_others_still_run(tmp_path):
    out = tmp_path / "r.json"
    killed: list[int] = []
    t0 = time.time()

    def kill_first_split_server() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for p in psutil.process_iter(["cmdline", "create_time"]):
                cmd = p.info["cmdline"] or []
                if (p.info["create_time"] >= t0 - 1 and "serve" in cmd and "split" in cmd
                        and "strace" not in cmd[0] and _serving(p)):
                    os.kill(p.pid, signal.SIGKILL)  # in the middle of the timing run
                    killed.append(p.pid)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_split_server)
    killer.start()
    proc = _compare("--strategies", "single,split,writev", "--transports", "h2c",
                    "--body-sizes", "256KiB", "--requests", "3000", "--counting-requests",
                    "16", "--repeat", "3", "--no-alloc", "--driver", "builtin", "--json", str(out))
    killer.join()
    assert killed, "no split server was seen"
    assert proc.returncode == 1, (killed, proc.stderr, proc.stdout[-3000:])  # a cell failed
    assert "Traceback" not in proc.stderr
    rows = {r["strategy"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"single", "split", "writev"}
    assert rows["split"]["error"] or rows["split"]["failures"] > 0
    for name in ("single", "writev"):
        assert rows[name]["error"] is None and rows[name]["failures"] == 0
        assert rows[name]["self_count_matches_strace"] is True
    assert "split" in proc.stdout  # the table still shows every cell


def test_review_preset_sets_the_experiment_and_accepts_overrides(tmp_path):
    out = tmp_path / "review.json"
    proc = _compare("--preset", "review", "--requests", "64", "--counting-requests", "8",
                    "--repeat", "2", "--no-alloc", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    cells = {(r["strategy"], r["transport"], r["body_bytes"]) for r in data["results"]}
    assert cells == {(s, t, 1 << 20) for s in ("single", "split", "writev")
                     for t in ("h2c", "h2")}
    assert all(r["requests"] == 2 * 64 and len(r["rounds"]) == 2 for r in data["results"])
    assert "--preset review" in data["meta"]["command"]


def test_unknown_preset_is_one_line():
    proc = _compare("--preset", "nope", timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "unknown preset" in proc.stderr


def _lab_namespaces() -> set[str]:
    from toolkit.lab.netlab import NETNS_DIR

    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith("ws-")}
    except FileNotFoundError:
        return set()


def test_netns_compare_counts_segments_per_strategy_and_leaves_nothing(tmp_path):
    before = _lab_namespaces()
    out = tmp_path / "netns.json"
    proc = _compare("--netns", "--mtu", "1500", "--rate", "2gbit", "--strategies", "split,cork",
                    "--transports", "h2c", "--body-sizes", "64KiB", "--requests", "300",
                    "--counting-requests", "16", "--repeat", "2", "--no-alloc", "--driver",
                    "builtin", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {r["strategy"]: r for r in json.loads(out.read_text())["results"]}
    assert json.loads(out.read_text())["meta"]["netns"] is True
    # A 64 KiB body over a 1500-byte MTU needs at least 45 segments (1448-byte MSS):
    # the figures come from the server's connections inside its namespace. (Whether
    # split adds segments there depends on autocorking under the rate limit.)
    for r in rows.values():
        assert 65536 / 1448 <= r["tcp_data_segments_per_response"] < 65536 / 500
        assert r["failures"] == 0 and r["self_count_matches_strace"] is True
    for r in rows.values():  # 4 frames: a header and a payload each, MSG_MORE or not
        assert r["write_syscalls_per_response"] >= 8
    assert _lab_namespaces() <= before


def _kernel_has_netem() -> bool:
    """Asked of the kernel directly: a netem qdisc on the loopback of a throwaway netns."""
    name = f"ws-netem-probe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        return subprocess.run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo",
                               "root", "netem", "delay", "1ms"], capture_output=True,
                              timeout=30).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True, timeout=30)


def test_netns_delay_works_with_netem_and_is_a_clear_error_without():
    proc = _compare("--netns", "--delay-ms", "5", "--strategies", "split", "--transports",
                    "h2c", "--body-sizes", "16KiB", "--requests", "50", "--repeat", "1",
                    timeout=120)
    if _kernel_has_netem():
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 2, proc.stderr
    assert "netem" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_loopback_split_sends_more_segments_than_cork():
    from toolkit.runner import compare

    result = compare(strategies=["split", "cork"], transports=["h2c"], body_sizes=["64KiB"],
                     requests=300, repeat=2, strace=False, alloc_probe=False, driver="builtin")
    segs = {r.strategy: r.tcp_data_segments_per_response for r in result.rows}
    for r in result.rows:  # the same bytes either way: the body and its frame headers
        assert r.tcp_bytes_per_response is not None
        assert 0.9 * 65536 < r.tcp_bytes_per_response < 1.1 * 65536
    # TCP_NODELAY: split's 9-byte headers leave as their own segments; MSG_MORE holds them.
    assert segs["split"] > 2 * segs["cork"], segs


def test_a_runner_killed_with_sigkill_leaves_no_server(tmp_path):
    """SIGKILL cannot be handled: the server asked the kernel for SIGTERM when its parent
    dies (PR_SET_PDEATHSIG), and exits on it."""
    script = tmp_path / "runner.py"
    script.write_text(
        "import time\n"
        "from toolkit.server.process import ServerOptions, ServerProcess\n"
        "s = ServerProcess(ServerOptions(strategy='single', body_bytes=10)).start()\n"
        "print(s.server_pid, flush=True)\n"
        "time.sleep(120)\n")
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    server_pid = int(runner.stdout.readline())
    assert psutil.pid_exists(server_pid)
    runner.kill()
    runner.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        os.kill(server_pid, signal.SIGKILL)
        raise AssertionError("the server outlived its killed runner")


@pytest.mark.skipif(not seccomp_deny.supported(), reason="seccomp filter written for x86_64/arm64")
def test_ptrace_refused_is_one_line_per_cell_naming_the_cause_and_timing_rows_stay(tmp_path):
    """A real refusal: compare runs under a seccomp filter that makes ptrace(2) fail with
    EPERM (as a container's profile does), so strace itself cannot trace the server."""
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit", "compare", "--strategies", "single",
         "--transports", "h2c,h2", "--body-sizes", "64KiB", "--requests", "200",
         "--counting-requests", "10", "--repeat", "1", "--driver", "builtin", "--no-alloc",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300, preexec_fn=seccomp_deny.deny_ptrace)
    assert proc.returncode == 1, proc.stderr  # cells failed their counting run
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("error ")]
    assert len(errors) == 2, proc.stdout
    for line in errors:
        assert "ptrace not permitted" in line and "seccomp" in line and "--no-strace" in line
    data = json.loads(out.read_text())
    rows = {r["transport"]: r for r in data["results"]}
    for row in rows.values():  # the untraced timing runs still measured
        assert row["mbytes_per_s"] > 0 and row["failures"] == 0
        assert row["write_syscalls_per_response"] is None and "ptrace" in row["error"]
    # No counting run can work here: the timing runs counted the TLS records instead.
    assert data["meta"]["tls_records_from"] == "timing"
    assert rows["h2"]["timing_tls_probe"] is True
    assert rows["h2"]["tls_records_per_response"] > 4  # 64 KiB: 4 DATA frames and more
    # The same run with --no-strace is clean: the advice in the message works.
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit", "compare", "--strategies", "single",
         "--transports", "h2c", "--body-sizes", "64KiB", "--requests", "100", "--repeat", "1",
         "--driver", "builtin", "--no-alloc", "--no-strace"],
        capture_output=True, text=True, timeout=300, preexec_fn=seccomp_deny.deny_ptrace)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ptrace_refusal_cause_reads_proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "sys/kernel/yama").mkdir(parents=True)
    status, scope = tmp_path / "self/status", tmp_path / "sys/kernel/yama/ptrace_scope"
    status.write_text("Name:\tpython\nSeccomp:\t2\n")
    scope.write_text("1\n")
    assert "seccomp" in ptrace_refusal_cause(str(tmp_path))
    status.write_text("Name:\tpython\nSeccomp:\t0\n")
    scope.write_text("3\n")
    assert "ptrace_scope=3" in ptrace_refusal_cause(str(tmp_path))
    scope.write_text("1\n")
    expected = "root without CAP_SYS_PTRACE" if os.geteuid() == 0 else "not root"
    assert expected in ptrace_refusal_cause(str(tmp_path))
    # yama scope 3 is named first even inside a container with a seccomp filter
    status.write_text("Name:\tpython\nSeccomp:\t2\n")
    scope.write_text("3\n")
    assert "ptrace_scope=3" in ptrace_refusal_cause(str(tmp_path))
