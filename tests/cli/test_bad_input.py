"""Each input that once ended in a traceback or a silent wrong answer, as a plain test.

(The strace log cases, empty, garbage, cut off, a --pid that matched nothing and 1-byte
writes, are in tests/strace_parsers/test_strace_cli.py; the fuzzed command line in
test_cli_fuzz.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.clients.fetch import H2Fetcher
from toolkit.clients.h2load import parse_h2load_text
from toolkit.errors import WriteshapeError
from toolkit.measure.rows import ResultRow, build_row
from toolkit.strategies import PLUGIN_MODULES_ENV


def _writeshape(*args: str, timeout: float = 120, env: dict[str, str] | None = None
                ) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc, time.monotonic() - t0


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("writeshape: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


QUICK = ("--strategies", "split", "--transports", "h2c", "--body-sizes", "16KiB",
         "--repeat", "1", "--requests", "50", "--no-alloc")


@pytest.mark.parametrize("flag", ["--json", "--csv", "--markdown"])
def test_compare_output_that_is_a_directory_is_refused_before_any_cell(tmp_path, flag):
    proc, took = _writeshape("compare", *QUICK, flag, str(tmp_path))
    _one_line_error(proc, "is a directory")
    assert took < 15  # checked up front: no server was started, no cell was run


def test_load_json_and_serve_stats_json_directories_are_refused(tmp_path):
    proc, _ = _writeshape("load", "http://127.0.0.1:9/", "--json", str(tmp_path))
    _one_line_error(proc, "is a directory")
    proc, _ = _writeshape("serve", "--port", "0", "--stats-json", str(tmp_path))
    _one_line_error(proc, "is a directory")


@pytest.mark.parametrize("size", ["1EiB", "99999999999999999999", "5GiB"])
def test_a_body_too_big_to_hold_is_one_line(size):
    proc, _ = _writeshape("serve", "--port", "0", "--body-size", size)
    _one_line_error(proc)
    assert "size" in proc.stderr


@pytest.mark.parametrize("doc", [
    {"meta": [], "results": []},
    {"meta": {}, "results": [1, 2]},
    {"meta": {}, "results": {"a": 1}},
    {"meta": {}, "results": [{"strategy": "single", "transport": 3, "body_bytes": 1}]},
    {"meta": {}, "results": [{"strategy": "single", "transport": "h2c", "body_bytes": 1,
                              "ratios": {"req_per_s": {"median": "fast"}}}]},
])
def test_report_on_results_that_are_not_rows_is_one_line(tmp_path, doc):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    proc, _ = _writeshape("report", str(path))
    _one_line_error(proc, str(path))


@pytest.mark.parametrize(("server_args", "flag"), [
    ("--strategy split", "--strategy"), ("--body-size 16", "--body-size"),
    ("--tls", "--tls"), ("--tls-mode stdlib", "--tls-mode"), ("--port=80", "--port"),
])
def test_server_args_may_not_set_what_the_row_is_labelled(server_args, flag):
    proc, took = _writeshape("compare", *QUICK, "--server-args", server_args)
    _one_line_error(proc, f"may not set {flag}")
    assert took < 15


@pytest.mark.parametrize(("args", "needle"), [
    (("--tls-mode", "bogus"), "--tls-mode"),
    (("--counting-requests", "0"), "--counting-requests"),
    (("--requests", "2", "--connections", "4", "--driver", "h2load"), "fewer than"),
    (("--mtu", "9000"), "--netns"),
    (("--rate", "1gbit"), "--netns"),
    (("--delay-ms", "5"), "--netns"),
    (("--repeat", "many"), "--repeat"),
    (("--max-seconds", "nan"), "--max-seconds"),
    (("--workers", "0"), "--workers"),
])
def test_compare_options_are_checked_at_once(args, needle):
    base = [a for a in QUICK if a not in ("--requests", "50")] if "--requests" in args \
        else list(QUICK)
    proc, took = _writeshape("compare", *base, *args)
    _one_line_error(proc, needle)
    assert took < 15  # before any server starts: not per cell, later


def test_an_odd_path_gets_a_404_and_the_connection_goes_on(start_server):
    srv = start_server(strategy="writev", body_bytes=1000)
    with H2Fetcher(srv.url) as f:
        assert f.get("//[x").status == 404  # urlsplit used to raise: "internal error"
        assert f.get("/bytes/10").body == bytes(range(10))
    assert not [ln for ln in srv.log_lines() if "internal error" in ln or "Traceback" in ln]


EXPLODING = '''
from toolkit.strategies import Shape, SocketCall, Strategy, is_payload, register


@register
class Explode(Strategy):
    """Raises in its plan for payloads of exactly 4321 bytes: a bug in a strategy."""

    name = "explode"
    description = "a broken strategy, for tests"
    shape = Shape()

    def plan(self, segments):
        if any(is_payload(s) and len(s) == 4321 for s in segments):
            raise RuntimeError("boom")
        yield SocketCall("sendmsg", tuple(segments))

    def plan_tls(self, segments):
        raise RuntimeError("boom")
'''


def test_a_failing_write_costs_one_connection_and_one_log_line(tmp_path):
    """An exception in the write path (here a broken strategy's plan) closes that
    connection with one log line; no traceback; the server serves the next client."""
    (tmp_path / "exploding_strategy.py").write_text(EXPLODING)
    env = dict(os.environ, **{PLUGIN_MODULES_ENV: "exploding_strategy"},
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", "--strategy",
                             "explode", "--port", "0", "--body-size", "1000"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        with pytest.raises(WriteshapeError, match=r"closed|reset|GOAWAY"), \
                H2Fetcher(url, timeout_s=10) as f:
            f.get("/bytes/4321")
        with H2Fetcher(url, timeout_s=10) as f:
            assert f.get("/bytes/10").status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "internal error" in ln]
    assert len(lines) == 1 and "RuntimeError: boom" in lines[0], err


def test_compare_exit_status_carries_a_self_count_mismatch():
    from toolkit.cli.compare import exit_code

    row = build_row(strategy="split", transport="h2c", body_bytes=1, driver="h2load",
                    timing=[], counting=None, alloc_bytes_per_response=None)
    row.failures, row.self_count_matches_strace = 0, True
    assert exit_code([row]) == 0
    row.self_count_matches_strace = False
    assert exit_code([row]) == 1
    row.self_count_matches_strace, row.error = True, "counting run: strace refused"
    assert exit_code([row]) == 1


def test_unmeasured_figures_are_null_not_zero():
    # A cell that never ran: no requests, no failures counted, not zero of them.
    row = build_row(strategy="split", transport="h2c", body_bytes=1, driver="h2load",
                    timing=[], counting=None, alloc_bytes_per_response=None,
                    error="timing server: did not start")
    assert row.requests is None and row.failures is None and row.req_per_s is None
    assert ResultRow.from_dict(row.to_dict()).failures is None
    # h2load over a run that lasted no time: no req/s.
    text = ("finished in 0.00s, 0.00 req/s, 0B/s\n"
            "requests: 1 total, 1 started, 0 done, 0 succeeded, 1 failed, 1 errored, "
            "0 timeout\n")
    assert parse_h2load_text(text).req_per_s is None
    # The built-in client when no connection could be made: no req/s, no MB/s.
    result = run_load(LoadConfig(url="http://127.0.0.1:9/", requests=5, timeout_s=5))
    assert result.requests == 0 and result.req_per_s is None and result.mbytes_per_s is None
