"""`writeshape compare` end to end: the review's table, measured, in the contract's JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from processes import tagged_processes

from tls_probe import RECORD_COUNTER

CONTRACT_ROW_FIELDS = (
    "strategy transport body_bytes requests failures req_per_s mbytes_per_s latency_ms_p50 "
    "latency_ms_p90 latency_ms_p99 latency_ms_max cpu_s_per_request rss_delta_bytes "
    "live_heap_delta_bytes alloc_bytes_per_response write_syscalls_per_response "
    "bytes_per_write_syscall syscalls tls_records_per_response tls_record_bytes_mean "
    "tls_overhead_bytes_per_response tcp_data_segments_per_response self_count_matches_strace"
).split()
MIB = 1 << 20


def _writeshape(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "toolkit", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def review_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "results.json"
    proc = _writeshape("compare", "--strategies", "single,split,writev", "--transports",
                       "h2c,h2", "--body-sizes", "1MiB", "--requests", "120",
                       "--counting-requests", "24", "--repeat", "6", "--json", str(out),
                       "--csv", str(out.with_suffix(".csv")),
                       "--markdown", str(out.with_suffix(".md")))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(out.read_text()), proc.stdout


def _row(data, strategy, transport):
    [row] = [r for r in data["results"]
             if (r["strategy"], r["transport"], r["body_bytes"]) == (strategy, transport, MIB)]
    return row


def test_json_has_the_contract_fields(review_json):
    _, data, _ = review_json
    meta = data["meta"]
    for key in ("started", "command", "python", "kernel", "versions", "driver"):
        assert key in meta
    assert len(data["results"]) == 6
    for row in data["results"]:
        for name in CONTRACT_ROW_FIELDS:
            assert name in row, name
        assert row["failures"] == 0 and row["requests"] == 6 * 120
        assert row["self_count_matches_strace"] is True
        assert row["req_per_s"] > 0 and row["latency_ms_p99"] >= row["latency_ms_p50"] > 0
        # The write path's own cost, from one more load with the server's timing on.
        assert row["send_us_per_response"] > 0
        assert (row["tls_us_per_response"] > 0) if row["transport"] == "h2" else (
            row["tls_us_per_response"] is None)
        # Every round kept, as the contract names its fields.
        assert [r["round"] for r in row["rounds"]] == list(range(6))
        for rnd in row["rounds"]:
            for key in ("started", "req_per_s", "mbytes_per_s", "latency_ms_p50",
                        "latency_ms_p99", "cpu_s_per_request", "rss_delta_bytes",
                        "live_heap_delta_bytes"):
                assert key in rnd, key
        assert row["label"] == row["strategy"] and row["server"] == "writeshape"
        assert set(row["cv"]) >= {"req_per_s"}
        mem = row["memory"]
        # 6 rounds of 120 requests over 4 worker processes: too few points of traffic in
        # each to call growth, and the table says why rather than guessing.
        assert mem["verdict"] is None and mem["series"], mem
        assert "too little traffic" in mem["verdict_reason"]
        assert len(mem["series"][0]) == 3 and mem["workers"] == 4
        assert [r["worker"] for r in row["rounds"]] == [0, 1, 2, 3, 0, 1]
        if row["strategy"] == "single":  # the baseline
            assert row["ratios"] is None and row["verdicts"] is None
        else:
            assert set(row["ratios"]) == set(row["verdicts"]) == {
                "req_per_s", "latency_ms_p99", "cpu_s_per_request"}
            r = row["ratios"]["req_per_s"]
            assert r["ci_low"] <= r["median"] <= r["ci_high"]
    assert meta["noise_threshold"] == 0.10 and "order-statistic" in meta["ci_method"]


def test_the_review_question_is_answered(review_json):
    _, data, _ = review_json
    for transport in ("h2c", "h2"):
        single = _row(data, "single", transport)
        split = _row(data, "split", transport)
        writev = _row(data, "writev", transport)
        # split: many times the write syscalls of writev (a header and a payload per frame)
        assert split["write_syscalls_per_response"] > 20 * writev["write_syscalls_per_response"]
        # single: a body-sized allocation per response; split stays bounded
        assert single["alloc_bytes_per_response"] >= MIB
        assert split["alloc_bytes_per_response"] < 64 << 10
        if transport == "h2c":
            assert writev["alloc_bytes_per_response"] < 64 << 10
        else:
            # TLS has no gather write: writev must hold the flush's ciphertext to send it
            # in one sendmsg, so it allocates about what single does.
            assert writev["alloc_bytes_per_response"] >= MIB
    # over TLS, split writes about twice the records of single (a 31-byte one per header)
    single, split = _row(data, "single", "h2"), _row(data, "split", "h2")
    assert 1.7 < split["tls_records_per_response"] / single["tls_records_per_response"] < 2.3
    assert split["tls_record_bytes_mean"] < single["tls_record_bytes_mean"] / 1.7
    assert _row(data, "single", "h2c")["tls_records_per_response"] is None  # not measured
    # The timing runs were probe-free: the records come from the counting run.
    assert data["meta"]["tls_records_from"] == "counting"
    for row in data["results"]:
        assert row["tcp_data_segments_per_response"] > 0


def test_csv_markdown_and_report_redraw(review_json):
    out, _, stdout = review_json
    assert "req/s" in stdout and "writes/resp" in stdout
    csv_text = out.with_suffix(".csv").read_text()
    assert csv_text.splitlines()[0].startswith("strategy,transport,body_bytes")
    assert len(csv_text.splitlines()) == 7  # nested figures flattened, lists as JSON
    assert "| h2c | 1MiB | single |" in out.with_suffix(".md").read_text()
    report = _writeshape("report", str(out))
    assert report.returncode == 0 and "split" in report.stdout and "writes/resp" in report.stdout
    assert "[95% CI]" in report.stdout


def test_report_plot_draws_the_intervals_and_memory(review_json, tmp_path):
    out, _, _ = review_json
    png = tmp_path / "verdicts.png"
    proc = _writeshape("report", str(out), "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    from matplotlib import image

    pixels = image.imread(str(png))
    assert pixels.shape[0] > 500 and pixels.shape[1] > 500
    # Not blank: many distinct colours (points, error bars, bands, series lines).
    flat = pixels.reshape(-1, pixels.shape[-1])
    assert len({tuple(round(float(c), 2) for c in px) for px in flat[::97]}) > 20


def test_report_rejects_a_file_that_is_not_results(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = _writeshape("report", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("writeshape: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_python_api_returns_rows_and_a_dataframe():
    from toolkit.runner import compare

    result = compare(strategies=["split", "writev"], transports=["h2c"], body_sizes=["64KiB"],
                     requests=60, counting_requests=8, repeat=2, strace=True,
                     alloc_probe=False)
    df = result.to_pandas()
    assert list(df["strategy"]) == ["split", "writev"]
    assert (df["failures"] == 0).all()
    assert df.set_index("strategy").loc["split", "write_syscalls_per_response"] > 4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_compare_keeps_finished_cells_and_leaves_no_process(tmp_path, sig):
    out = tmp_path / "partial.json"
    tag = f"interrupt-{os.getpid()}-{sig}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "compare", "--strategies", "single,split,writev,cork",
         "--transports", "h2c", "--body-sizes", "64KiB,256KiB", "--requests", "200",
         "--counting-requests", "16", "--repeat", "20", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, WRITESHAPE_TEST_TAG=tag))
    deadline = time.monotonic() + 180
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists():
            rows = sum(1 for r in json.loads(out.read_text())["results"] if r["rounds"])
            if rows >= 2:
                break
        time.sleep(0.2)
    assert rows >= 2, "no round finished"
    assert len(tagged_processes(tag)) >= 2  # the detector sees compare and its server
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    data = json.loads(out.read_text())
    assert sum(1 for r in data["results"] if r["rounds"]) >= rows
    assert all(not r["failures"] for r in data["results"])
    time.sleep(0.5)
    left = tagged_processes(tag)  # servers, strace, h2load: all inherit the tag
    assert not left, [p.cmdline() for p in left]


def test_bad_arguments_are_one_line_errors():
    for args, needle in ((["--strategies", "single,nope"], "unknown strategy"),
                         (["--transports", "h3"], "unknown transport"),
                         (["--body-sizes", "1XB"], "not a size"),
                         (["--driver", "wrk"], "--driver")):
        proc = _writeshape("compare", *args, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_missing_strace_is_named(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH
    proc = subprocess.run([sys.executable, "-m", "toolkit", "compare", "--strategies", "split"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "strace not found" in proc.stderr and "apt-get install strace" in proc.stderr


def test_timing_runs_are_probe_free_and_records_still_come_without_strace():
    """With strace the TLS timing servers run `--no-tls-probe` and the counting run gives
    the records; with --no-strace the timing runs count them. Same figures either way."""
    from toolkit.runner import compare

    rows = {}
    for strace in (True, False):
        res = compare(["split"], ["h2"], ["256KiB"], requests=40, counting_requests=8,
                      repeat=1, driver="builtin", strace=strace, alloc_probe=False)
        assert res.meta["tls_records_from"] == ("counting" if strace else "timing")
        assert res.meta["tls_record_counter"] == RECORD_COUNTER
        rows[strace] = res.rows[0]
        # What the timing servers said of themselves (/stats "tls_probe").
        assert rows[strace].timing_tls_probe is (not strace)
    for row in rows.values():
        assert row.error is None and row.failures == 0
        # 16 DATA frames per 256 KiB: a 31-byte record per header plus one per payload.
        assert row.tls_records_per_response is not None
        assert 28 < row.tls_records_per_response < 35  # control responses are in the count
        # What the client received in the timing runs: about the same records per response
        # (the counting run's few responses carry more of the connection's control frames).
        received = row.tls_records_received_per_response
        assert received is not None
        assert abs(received - row.tls_records_per_response) < 0.1 * received


def test_server_args_reach_every_server_and_bad_ones_are_one_line():
    from toolkit.runner import compare

    res = compare(["coalesce"], ["h2"], ["256KiB"], requests=30, counting_requests=8,
                  repeat=1, driver="builtin", alloc_probe=False,
                  server_args=["--coalesce-records-per-send", "4"])
    row = res.rows[0]
    assert res.meta["server_args"] == ["--coalesce-records-per-send", "4"]
    assert row.error is None and row.failures == 0
    # 17 records per 256 KiB response (16 KiB each, frame headers included), 4 per sendmsg.
    assert row.strace_write_syscalls is not None
    per_response = row.strace_write_syscalls.get("sendmsg", 0) / row.counting_responses
    assert 5 <= per_response < 6, row.strace_write_syscalls
    proc = _writeshape("compare", "--server-args", "--no-such-flag 3")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--server-args" in proc.stderr and "--no-such-flag" in proc.stderr
