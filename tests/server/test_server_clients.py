"""Real clients (curl, h2load) fetch intact bodies from every strategy."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from toolkit.clients.fetch import fetch
from toolkit.protocol.body import expected_chunk
from toolkit.strategies import strategy_names

BODY_SIZES = (0, 1, 9000, 16384, 16385, 1 << 20)


@pytest.mark.parametrize("threads", [False, True], ids=["loop", "threads"])
@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_curl_gets_intact_bodies(start_server, strategy, threads):
    srv = start_server(strategy=strategy, threads=threads, body_bytes=300000)
    for n in BODY_SIZES:
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "-",
             f"{srv.url}/bytes/{n}"], capture_output=True, check=True, timeout=60).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/2 200"), head
        assert f"content-length: {n}".encode() in head.lower()
        assert body == expected_chunk(0, n), f"{strategy}: body of {n} bytes differs"


@pytest.mark.parametrize("threads", [False, True], ids=["loop", "threads"])
@pytest.mark.parametrize("strategy", strategy_names("h2c"))
def test_h2load_sees_no_failures(start_server, strategy, threads):
    srv = start_server(strategy=strategy, threads=threads, body_bytes=1 << 20)
    out = subprocess.run(["h2load", "-n", "200", "-c", "4", "-m", "4", f"{srv.url}/"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", out)
    assert m, out
    assert (int(m[1]), int(m[3]), int(m[4]), int(m[5])) == (200, 200, 0, 0)
    # Every response body went out: 200 x 1 MiB of DATA payload at least.
    stats = srv.stats()
    assert stats["responses"] >= 200
    assert stats["bytes_sent"] >= 200 * (1 << 20)


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "h2"])
def test_uvloop_serves_the_same_bytes(start_server, tls):
    """--loop uvloop: the shell's calls (add_reader/add_writer, call_later, signals) on
    libuv's loop; every body is the same, byte for byte."""
    assert importlib.util.find_spec("uvloop"), "uvloop is in the dev extra: make setup"
    srv = start_server(strategy="writev", tls=tls, body_bytes=16384,
                       extra_args=("--loop", "uvloop"))
    assert srv.stats()["event_loop"] == "uvloop"
    for n in (0, 1, 16384, 100000, 1 << 20):
        out = subprocess.run(
            ["curl", "-sSk", "--http2" if tls else "--http2-prior-knowledge", "-o", "-",
             f"{srv.url}/bytes/{n}"], capture_output=True, check=True, timeout=60).stdout
        assert out == expected_chunk(0, n), f"body of {n} bytes differs"


def test_uvloop_counts_equal_strace(tmp_path):
    """Under uvloop the server's own count of its socket calls still equals strace's
    (compare's self-count check), for a gather write and for a write per segment."""
    assert importlib.util.find_spec("uvloop"), "uvloop is in the dev extra: make setup"
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit", "compare", "--strategies", "writev,split",
         "--transports", "h2c", "--body-sizes", "64KiB", "--repeat", "1", "--requests", "200",
         "--counting-requests", "40", "--no-alloc", "--server-args", "--loop uvloop",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["results"]
    assert [r["self_count_matches_strace"] for r in rows] == [True, True]
    assert all(r["failures"] == 0 and r["write_syscalls_per_response"] > 0 for r in rows)


def test_endpoints(start_server):
    srv = start_server(strategy="writev", body_bytes=12345)
    root = fetch(srv.url, "/")
    assert root.status == 200 and root.body == expected_chunk(0, 12345)
    assert root.headers["content-length"] == "12345"
    assert fetch(srv.url, "/bytes/x").status == 400
    assert fetch(srv.url, "/nope").status == 404
    mem = fetch(srv.url, "/mem").json()
    assert mem["rss_bytes"] > 1 << 20 and mem["live_heap_bytes"] > 0
    stats = fetch(srv.url, "/stats").json()
    assert stats["strategy"] == "writev" and stats["transport"] == "h2c"
    assert stats["tls"] is None
    assert stats["send_calls"]["sendmsg"] >= 3 and stats["send_calls"]["send"] == 0
    assert stats["responses"] == 4  # /stats itself is counted once it is sent


def test_sigterm_and_sigint_exit_zero(start_server):
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        srv = start_server(strategy="single", body_bytes=1000)
        fetch(srv.url, "/")
        srv.proc.send_signal(sig)
        assert srv.proc.wait(20) == 0


def test_bad_arguments_give_one_line_errors():
    for args, needle in ((["--strategy", "nope"], "unknown strategy"),
                         (["--strategy", "coalesce"], "needs TLS"),
                         (["--dynamic-records"], "needs --tls"),
                         (["--body-size", "12XB"], "not a size"),
                         (["--loop", "bogus"], "--loop must be asyncio or uvloop"),
                         (["--stream-turn", "0"], "--stream-turn must be at least")):
        proc = subprocess.run(["writeshape", "serve", "--port", "0", *args],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_port_in_use_is_a_clear_error(start_server):
    srv = start_server(strategy="single", body_bytes=10)
    proc = subprocess.run(["writeshape", "serve", "--port", str(srv.port)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr


def test_load_to_a_port_nobody_listens_on_is_one_line():
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(["writeshape", "load", f"http://127.0.0.1:{port}/", "--requests", "3"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no request reached" in lines[0], proc.stderr
