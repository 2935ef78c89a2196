"""h2load: the text summary of nghttp2 1.52, the --output-file JSON of 1.69+, real runs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from nghttpd_fixtures import free_port, nghttpd, write_docroot

from toolkit.clients.h2load import (
    H2loadError,
    build_h2load_command,
    parse_h2load_json,
    parse_h2load_text,
    run_h2load,
    supports_output_file,
)
from toolkit.errors import MissingToolError, UsageError

# Printed by h2load 1.52.0 (Debian 12) against nghttpd, 1 MiB bodies, -n200 -c4 -m4.
TEXT_152 = """starting benchmark...
spawning thread #0: 4 total client(s). 200 total requests
Application protocol: h2c
progress: 100% done

finished in 43.86ms, 4559.96 req/s, 4.46GB/s
requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 200 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 200.11MB (209835188) total, 2.82KB (2892) headers (space savings 90.91%), 200.00MB (209715200) data
                     min         max         mean         sd        +/- sd
time for request:      457us      4.13ms      2.74ms       818us    64.00%
time for connect:      135us       412us       246us       118us    75.00%
time to 1st byte:      453us      3.60ms      2.21ms      1.33ms    50.00%
req/s           :    1152.75     1212.49     1175.58       25.86    75.00%
"""  # noqa: E501

# Same summary when nothing could connect: h2load prints zero rows for unsampled metrics.
TEXT_152_REFUSED = """finished in 300us, 0.00 req/s, 0B/s
requests: 20 total, 0 started, 0 done, 0 succeeded, 20 failed, 20 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :       0.00        0.00        0.00        0.00   100.00%
"""

# Built from the --output-file layout of nghttp2 1.69 ("version": "v1"; every time in
# seconds; per metric min/max/median/p95/p99/mean/sd/within_sd/samples; no p90).
JSON_169 = {
    "version": "v1",
    "metadata": {"generator": "h2load 1.69.0"},
    "measurements": {
        "duration": 0.5,
        "request_per_second": 200.0,
        "bytes_per_second": 210000000,
        "requests": {"total": 100, "started": 100, "done": 100, "succeeded": 98,
                     "failed": 2, "errored": 1, "timeout": 0},
        "status_codes": {"2xx": 98, "3xx": 0, "4xx": 1, "5xx": 0},
        "traffic": {"total": 105000000, "headers": 2000, "headers_decompressed": 20000,
                    "data": 104857600},
        "performance": {
            "request": {"min": 0.001, "max": 0.02, "median": 0.004, "p95": 0.01,
                        "p99": 0.015, "mean": 0.005, "sd": 0.002, "within_sd": 80,
                        "samples": [0.001, 0.004]},
            "connect": {"min": 0.0001, "max": 0.0003, "median": 0.0002, "p95": 0.0003,
                        "p99": 0.0003, "mean": 0.0002, "sd": 0.0001, "within_sd": 100,
                        "samples": [0.0002]},
            "ttfb": {"min": 0.0005, "max": 0.003, "median": 0.001, "p95": 0.002,
                     "p99": 0.0025, "mean": 0.0012, "sd": 0.0004, "within_sd": 90,
                     "samples": [0.001]},
            "request_per_second": {"min": 40.0, "max": 60.0, "median": 50.0, "p95": 60.0,
                                   "p99": 60.0, "mean": 50.0, "sd": 5.0, "within_sd": 100,
                                   "samples": [50.0]},
        },
    },
}


def test_text_152_summary() -> None:
    r = parse_h2load_text(TEXT_152)
    assert (r.requests, r.failures, r.errored, r.timeouts) == (200, 0, 0, 0)
    assert r.req_per_s == 4559.96
    assert r.duration_s == pytest.approx(0.04386)
    assert r.body_bytes == 209715200 and r.traffic_bytes == 209835188
    assert r.mbytes_per_s == pytest.approx(209715200 / 0.04386 / 1e6)
    assert r.latency_ms_max == pytest.approx(4.13) and r.latency_ms_mean == pytest.approx(2.74)
    assert r.ttfb_ms_max == pytest.approx(3.60)
    assert r.connect_ms_mean == pytest.approx(0.246)
    assert r.status_codes == {"2xx": 200, "3xx": 0, "4xx": 0, "5xx": 0}
    # The text format has no percentiles: they are unknown, not zero.
    assert r.latency_ms_p50 is None and r.latency_ms_p90 is None and r.latency_ms_p99 is None
    assert r.ttfb_ms_p50 is None and r.ttfb_ms_p99 is None


def test_text_without_samples_reports_none_not_zero() -> None:
    r = parse_h2load_text(TEXT_152_REFUSED)
    assert (r.requests, r.failures, r.errored) == (0, 20, 20)
    assert r.latency_ms_max is None and r.latency_ms_mean is None
    assert r.ttfb_ms_mean is None and r.connect_ms_mean is None


def test_text_of_older_h2load_traffic_line() -> None:
    old = TEXT_152.replace(
        "traffic: 200.11MB (209835188) total, 2.82KB (2892) headers (space savings 90.91%), "
        "200.00MB (209715200) data",
        "traffic: 209835188 bytes total, 2892 bytes headers (space savings 90.91%), "
        "209715200 bytes data",
    ).replace(", 0 timeout", "")
    r = parse_h2load_text(old)
    assert r.body_bytes == 209715200 and r.timeouts == 0


def test_json_169_document() -> None:
    r = parse_h2load_json(json.dumps(JSON_169))
    assert (r.requests, r.failures, r.errored, r.requests_total) == (98, 2, 1, 100)
    assert r.req_per_s == 200.0 and r.duration_s == 0.5
    assert r.mbytes_per_s == pytest.approx(104857600 / 0.5 / 1e6)
    assert r.latency_ms_p50 == pytest.approx(4.0)
    assert r.latency_ms_p99 == pytest.approx(15.0)
    assert r.latency_ms_max == pytest.approx(20.0)
    assert r.latency_ms_p90 is None  # v1 has p95, not p90
    assert r.ttfb_ms_p50 == pytest.approx(1.0) and r.ttfb_ms_p99 == pytest.approx(2.5)
    assert r.status_codes["4xx"] == 1 and r.source_format == "json-v1"


def test_json_missing_fields_are_none() -> None:
    doc = json.loads(json.dumps(JSON_169))
    del doc["measurements"]["performance"]
    del doc["measurements"]["traffic"]
    r = parse_h2load_json(json.dumps(doc))
    assert r.latency_ms_p50 is None and r.ttfb_ms_p99 is None and r.mbytes_per_s is None
    with pytest.raises(H2loadError):
        parse_h2load_json('{"version": "v1"}')
    with pytest.raises(H2loadError):
        parse_h2load_json("not json")


@settings(max_examples=60, deadline=None)
@given(hs.text())
def test_text_parser_survives_any_input(text: str) -> None:
    with contextlib.suppress(H2loadError):
        parse_h2load_text(text)


@settings(max_examples=60, deadline=None)
@given(hs.recursive(hs.none() | hs.booleans() | hs.floats() | hs.integers() | hs.text(),
                    lambda c: hs.lists(c) | hs.dictionaries(hs.text(), c), max_leaves=20))
def test_json_parser_survives_any_document(doc: object) -> None:
    try:
        parse_h2load_json(json.dumps({"measurements": {"requests": {}, "x": doc}}))
        parse_h2load_json(json.dumps(doc))
    except H2loadError:
        pass


def test_command_line() -> None:
    cmd = build_h2load_command("h2load", "http://h/", requests=10, connections=4, streams=2,
                               threads=8)
    assert cmd == ["h2load", "-n", "10", "-c", "4", "-m", "2", "-t", "4", "http://h/"]
    cmd = build_h2load_command("h2load", "http://h/", duration_s=1.5, output_file="/o.json")
    assert cmd[1:3] == ["-D", "1500ms"] and "--output-file" in cmd
    with pytest.raises(UsageError):
        build_h2load_command("h2load", "http://h/", requests=2, connections=4)
    with pytest.raises(UsageError):
        build_h2load_command("h2load", "http://h/")


@pytest.fixture(scope="module")
def h2c_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    write_docroot(root, (1 << 20,))
    with nghttpd(root) as port:
        yield f"http://127.0.0.1:{port}/bytes/{1 << 20}"


def test_real_h2load_run(h2c_url: str) -> None:
    r = run_h2load(h2c_url, requests=64, connections=4, streams=4)
    assert (r.requests, r.failures, r.errored) == (64, 0, 0)
    assert r.body_bytes == 64 << 20
    assert r.req_per_s > 0 and r.mbytes_per_s is not None and r.mbytes_per_s > 0
    assert r.latency_ms_max is not None and r.latency_ms_max > 0
    # Percentiles come from h2load's own per-request log (--log-file), one sample each.
    assert r.latency_ms_p50 is not None and r.latency_ms_p99 is not None
    assert 0 < r.latency_ms_p50 <= r.latency_ms_p90 <= r.latency_ms_p99 <= r.latency_ms_max
    assert r.command[-1] == h2c_url and "-m" in r.command
    # This machine's h2load (1.52) has no JSON output; a newer one would be used for it.
    assert r.source_format == ("json-v1" if supports_output_file(r.command[0]) else "text")


def test_request_log_of_failed_streams_gives_no_latency() -> None:
    from toolkit.clients.h2load import H2loadResult, apply_request_log

    r = H2loadResult(requests=0, failures=2, errored=2, req_per_s=0.0, mbytes_per_s=None)
    apply_request_log(r, "1700000000000000\t-1\t1500\n1700000000000100\t-1\t2500\nbad\n")
    assert r.latency_ms_p50 is None and r.latency_ms_max is None
    apply_request_log(r, "1700000000000000\t200\t1500\n1700000000000100\t200\t2500\n")
    assert r.latency_ms_p50 == pytest.approx(1.5, rel=0.01)
    assert r.latency_ms_max == pytest.approx(2.5, rel=0.01)


def test_real_h2load_refused_connection_counts_errors() -> None:
    r = run_h2load(f"http://127.0.0.1:{free_port()}/", requests=4, connections=2)
    assert r.requests == 0 and r.errored == 4 and r.latency_ms_max is None


def test_missing_h2load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="nghttp2-client"):
        run_h2load("http://127.0.0.1:1/", requests=1)


def test_bad_url() -> None:
    with pytest.raises(UsageError):
        run_h2load("ftp://x/", requests=1)
