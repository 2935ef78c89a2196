"""The built-in HTTP/2 load client against real servers (nghttpd, writeshape serve)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nghttpd_fixtures import free_port, make_cert, nghttpd, write_docroot
from rich.console import Console

from toolkit.cli.load import render_load_result
from toolkit.clients.builtin import LoadConfig, run_load
from toolkit.clients.summary import LoadSummary
from toolkit.errors import UsageError
from toolkit.protocol.body import BodyStore

MIB = 1 << 20


@pytest.fixture(scope="module")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    write_docroot(root, (0, 1000, 16384, MIB))
    bad = bytearray(BodyStore(MIB).view(MIB))
    bad[700_000] ^= 0xFF  # one wrong byte deep inside the body
    (root / "bytes" / "corrupt").write_bytes(bytes(bad))
    return root


@pytest.fixture(scope="module")
def h2c_port(docroot: Path) -> Iterator[int]:
    with nghttpd(docroot) as port:
        yield port


def _ok(r: LoadSummary, n: int) -> None:
    assert r.failures == 0, r.failures_by_cause
    assert r.requests == n
    assert r.latency_ms_p50 is not None and r.latency_ms_p99 is not None
    assert r.latency_ms_max is not None
    assert 0 < r.latency_ms_p50 <= r.latency_ms_p99 <= r.latency_ms_max * 1.001
    assert r.ttfb_ms_p50 is not None and r.ttfb_ms_p50 <= r.latency_ms_max * 1.001


def test_h2c_1mib_bodies_arrive_whole_and_verified(h2c_port: int) -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{h2c_port}/bytes/{MIB}", requests=24,
                            connections=2, streams=3))
    _ok(r, 24)
    assert r.body_bytes_received == 24 * MIB
    assert r.mbytes_per_s == pytest.approx(24 * MIB / r.duration_s / 1e6)
    assert r.tls_records_received is None and r.transport == "h2c"


@pytest.mark.parametrize("size", [0, 1000, 16384])
def test_small_and_empty_bodies(h2c_port: int, size: int) -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{h2c_port}/bytes/{size}", requests=30,
                            connections=2, streams=4))
    _ok(r, 30)
    assert r.body_bytes_received == 30 * size


def test_a_corrupted_byte_is_a_pattern_failure(h2c_port: int) -> None:
    url = f"http://127.0.0.1:{h2c_port}/bytes/corrupt"
    r = run_load(LoadConfig(url=url, requests=6, connections=1, streams=2))
    assert r.requests == 0
    assert r.failures_by_cause == {"pattern": 6}
    unchecked = run_load(LoadConfig(url=url, requests=6, verify_body=False))
    assert unchecked.requests == 6 and unchecked.failures == 0


def test_missing_resource_is_a_status_failure(h2c_port: int) -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{h2c_port}/nope", requests=5))
    assert r.requests == 0
    assert r.failures_by_cause == {"status": 5}
    assert r.latency_ms_p50 is None  # nothing succeeded: no invented latency


def test_path_override_and_warmup_is_not_counted(h2c_port: int) -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{h2c_port}/nope", requests=10,
                            warmup_requests=7, streams=2, path_override="/bytes/16384"))
    _ok(r, 10)
    assert r.body_bytes_received == 10 * 16384


def test_duration_mode_runs_for_the_duration(h2c_port: int) -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{h2c_port}/bytes/16384", requests=None,
                            duration_s=0.4, connections=2, streams=2))
    assert r.failures == 0
    assert r.requests > 10
    assert r.duration_s == pytest.approx(0.4, abs=0.05)


def test_refused_connections_are_counted_as_connect_failures() -> None:
    r = run_load(LoadConfig(url=f"http://127.0.0.1:{free_port()}/", requests=5, connections=3))
    assert r.requests == 0
    assert r.failures_by_cause == {"connect": 3}


@pytest.mark.parametrize("url", ["ftp://x/", "127.0.0.1:80", "http://", "http://h:99999/"])
def test_bad_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(UsageError):
        run_load(LoadConfig(url=url, requests=1))


def test_request_count_and_duration_are_exclusive() -> None:
    with pytest.raises(UsageError):
        run_load(LoadConfig(url="http://127.0.0.1:1/", requests=1, duration_s=1.0))


def test_tls_alpn_h2_against_nghttpd(docroot: Path, tmp_path: Path) -> None:
    key, cert = make_cert(tmp_path)
    with nghttpd(docroot, tls=(key, cert)) as port:
        url = f"https://127.0.0.1:{port}/bytes/{MIB}"
        r = run_load(LoadConfig(url=url, requests=8, connections=2, streams=2,
                                ca_pem_path=str(cert)))
        _ok(r, 8)
        assert r.transport == "h2"
        assert r.body_bytes_received == 8 * MIB
        if r.tls_records_received is not None:  # counted when tls_probe is installed
            assert r.tls_record_bytes_received is not None
            assert r.tls_record_bytes_received > 8 * MIB
        untrusted = run_load(LoadConfig(url=url, requests=2))  # self-signed, not trusted
        assert untrusted.requests == 0 and set(untrusted.failures_by_cause) == {"tls"}


def test_against_writeshape_serve() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "serve", "--port", "0", "--body-size", "64KiB"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://"), line
        base = line.split()[-1]
        r = run_load(LoadConfig(url=base + "/", requests=20, connections=2, streams=2))
        _ok(r, 20)
        assert r.body_bytes_received == 20 * 65536
        r = run_load(LoadConfig(url=base + "/bytes/100000", requests=5))
        _ok(r, 5)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_render_shows_the_figures() -> None:
    r = LoadSummary(driver="builtin", requests=3, failures=1, failures_by_cause={"reset": 1},
                    duration_s=1.5,
                   req_per_s=2.0, mbytes_per_s=1.25, body_bytes_received=10,
                   latency_ms_p50=1.0, latency_ms_p90=2.0, latency_ms_p99=3.0,
                   latency_ms_max=4.0, ttfb_ms_p50=None, ttfb_ms_p99=None, connections=1,
                   streams=1, url="http://x/")
    console = Console(record=True, width=120)
    render_load_result(r, console)
    text = console.export_text()
    assert "reset 1" in text and "1.000 / 2.000 / 3.000 / 4.000" in text and "- / -" in text
