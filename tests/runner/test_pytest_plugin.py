"""The pytest plugin, exercised the way a user's suite would use it (pytester runs).

Generated test files use the fixtures against real servers; the ``--benchmark-json``
files they write are read back and checked for the compare-JSON names and for values
that follow from how each strategy writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import UsageError
from toolkit.pytest_plugin import BatchFailedError, start_server

pytest_plugins = ["pytester"]

BODY = 64 << 10
FIGURE_NAMES = (
    "write_syscalls_per_response", "bytes_per_write_syscall", "tls_records_per_response",
    "alloc_bytes_per_response", "req_per_s", "latency_ms_p99", "cpu_s_per_request",
    "rss_delta_bytes", "syscalls", "self_count_matches_strace",
)  # fmt: skip

BENCH_FILE = f"""
import pytest

@pytest.mark.parametrize("transport", ["h2c", "h2"])
@pytest.mark.parametrize("strategy", ["single", "split", "writev"])
def test_shape(benchmark, writeshape_server, writeshape_batch, writeshape_figures,
               strategy, transport):
    server = writeshape_server(strategy, transport, body_bytes={BODY})
    batch = writeshape_batch(server, requests=16, connections=2, streams=4)
    benchmark.pedantic(batch, rounds=2)
    writeshape_figures(benchmark, batch)
"""


def _run_json(pytester: pytest.Pytester, *args: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    out = pytester.path / "bench.json"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           f"--benchmark-json={out}", *args)
    data = json.loads(out.read_text()) if out.exists() else {"benchmarks": []}
    return result, {b["name"]: b["extra_info"] for b in data["benchmarks"]}


def test_benchmarks_carry_measured_figures_in_their_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_FILE)
    result, info = _run_json(pytester)
    result.assert_outcomes(passed=6)
    assert len(info) == 6
    for name, figures in info.items():
        missing = [k for k in FIGURE_NAMES if k not in figures]
        assert not missing, f"{name}: {missing}"
        assert figures["self_count_matches_strace"] is True, name
        assert figures["requests"] == 2 * 16
        assert figures["req_per_s"] > 0

    def fig(strategy: str, transport: str, key: str) -> Any:
        return info[f"test_shape[{strategy}-{transport}]"][key]

    # Cleartext: split writes header and payload apart, writev gathers them in one call.
    assert fig("split", "h2c", "write_syscalls_per_response") \
        > 1.5 * fig("writev", "h2c", "write_syscalls_per_response")
    assert fig("writev", "h2c", "bytes_per_write_syscall") \
        > 1.5 * fig("split", "h2c", "bytes_per_write_syscall")
    # A 64 KiB body is at least four 16 KiB DATA frames: split makes two calls per frame.
    assert fig("split", "h2c", "write_syscalls_per_response") >= 8
    for strategy in ("single", "split", "writev"):
        assert fig(strategy, "h2c", "tls_records_per_response") is None
        # At least one full record per 16 KiB frame, and no negative leftovers.
        assert fig(strategy, "h2", "tls_records_per_response") >= BODY / (16 << 10)
    # Under TLS every split header is a record of its own; single sends whole buffers.
    assert fig("split", "h2", "tls_records_per_response") \
        > 1.5 * fig("single", "h2", "tls_records_per_response")
    # single copies the body into one buffer per response; writev sends it by reference.
    assert fig("single", "h2c", "alloc_bytes_per_response") >= BODY
    assert fig("writev", "h2c", "alloc_bytes_per_response") < BODY / 2
    result.stdout.fnmatch_lines(["*writeshape figures*", "NOW*test_shape?split-h2c?*"])


def test_options_leave_unmeasured_figures_null(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_FILE)
    result, info = _run_json(pytester, "-k", "writev and h2 and not h2c",
                             "--writeshape-no-strace", "--writeshape-no-alloc")
    result.assert_outcomes(passed=1, deselected=5)
    (figures,) = info.values()
    for key in ("write_syscalls_per_response", "bytes_per_write_syscall", "syscalls",
                "self_count_matches_strace", "alloc_bytes_per_response"):
        assert figures[key] is None, key
    assert figures["tls_records_per_response"] >= BODY / (16 << 10)


def test_compare_run_shows_saved_figures_next_to_new_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_FILE)
    common = ("-p", "no:cacheprovider", "-k", "single and h2c", "--writeshape-no-strace",
              "--writeshape-no-alloc", f"--benchmark-storage=file://{pytester.path}/store")
    pytester.runpytest_subprocess(*common, "--benchmark-autosave").assert_outcomes(
        passed=1, deselected=5)
    result = pytester.runpytest_subprocess(*common, "--benchmark-compare")
    result.assert_outcomes(passed=1, deselected=5)
    result.stdout.fnmatch_lines(["*writeshape figures*", "0001*test_shape?single-h2c?*",
                                 "NOW*test_shape?single-h2c?*"])


def test_tests_using_the_fixtures_get_the_writeshape_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCH_FILE, test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "not writeshape")
    result.assert_outcomes(passed=1, deselected=6)
    assert "writeshape figures" not in result.stdout.str()


def test_importing_the_plugin_starts_nothing_heavy() -> None:
    code = ("import sys, toolkit.pytest_plugin\n"
            "heavy = ['toolkit.clients.builtin', 'toolkit.server.process', "
            "'toolkit.runner.run', 'h2', 'psutil', 'strace_parsers']\n"
            "print([m for m in heavy if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parent)
    assert out.stdout.strip() == "[]"


def test_a_round_with_failed_requests_raises(writeshape_server, writeshape_batch) -> None:
    server = writeshape_server("writev", "h2c", body_bytes="16KiB")
    batch = writeshape_batch(server, requests=4, connections=1, streams=1)
    batch()
    assert batch.responses == 4
    server.process.stop()
    with pytest.raises(BatchFailedError, match="4 requests"):
        batch()


@pytest.mark.parametrize(("args", "message"), [
    (("nope", "h2c"), "unknown strategy 'nope'; choose from single, "),
    (("writev", "h3"), "unknown transport 'h3'"),
    (("coalesce", "h2c"), "coalesce is a TLS strategy"),
])
def test_bad_server_arguments_say_what_to_use(args: tuple[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        start_server(*args)


VERDICT_FILE = """
def test_split_against_single(benchmark, writeshape_server, writeshape_batch,
                              writeshape_figures):
    single = writeshape_batch(writeshape_server("single", "h2c", body_bytes="1MiB"),
                              requests=96, connections=2, streams=4)
    split = writeshape_batch(writeshape_server("split", "h2c", body_bytes="1MiB"),
                             requests=96, connections=2, streams=4)

    def both():  # interleaved: round i of each ran side by side
        single()
        split()

    # 12 rounds: the 95% interval runs from the 3rd smallest ratio to the 3rd largest, so
    # one odd round (8 rounds: the extremes themselves) cannot decide the verdict.
    benchmark.pedantic(both, rounds=12)
    figures = writeshape_figures(benchmark, split, baseline=single, strace=False,
                                 alloc=False)
    assert len(figures["rounds"]) == 12
"""


def test_figures_carry_intervals_and_verdicts_against_a_baseline_batch(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_verdict=VERDICT_FILE)
    result, info = _run_json(pytester)
    result.assert_outcomes(passed=1)
    (figures,) = info.values()
    interval = figures["intervals"]["req_per_s"]
    assert interval["ci_low"] <= interval["median"] <= interval["ci_high"]
    assert interval["n"] == 12 and interval["confidence"] >= 0.95
    # split writes 128 times per 1 MiB response where single writes once: well below it.
    assert figures["verdicts"]["req_per_s"] == "worse", figures["ratios"]
    assert figures["ratios"]["req_per_s"]["ci_high"] < 1
    assert figures["verdicts"]["cpu_s_per_request"] == "worse", figures["ratios"]
