"""send_us/tls_us_per_response: from /stats write_timing deltas, null where not timed."""

from __future__ import annotations

from typing import Any

from toolkit.clients.summary import LoadSummary
from toolkit.measure.rows import build_row, timing_figures
from toolkit.measure.snapshot import Snapshot, timing_sample


def _snap(responses: int, on: bool, send_ns: int, tls_ns: int | None) -> Snapshot:
    stats: dict[str, Any] = {"responses": responses,
                             "write_timing": {"on": on, "send_ns": send_ns, "tls_ns": tls_ns}}
    return Snapshot(stats=stats, mem={}, cpu_s=None, settled=True)


LOAD = LoadSummary(driver="h2load", requests=100, failures=0, duration_s=1.0,
                   req_per_s=100.0, mbytes_per_s=1.0)


def test_a_run_timed_throughout_gives_microseconds_per_response() -> None:
    sample = timing_sample(LOAD, _snap(10, True, 1_000, 50), _snap(110, True, 401_000, 250_050))
    assert (sample.write_send_ns, sample.write_tls_ns) == (400_000, 250_000)
    figures = timing_figures([sample])
    assert figures["send_us_per_response"] == 4.0 and figures["tls_us_per_response"] == 2.5


def test_a_run_not_timed_at_both_ends_is_null_never_zero() -> None:
    for before_on, after_on in ((False, False), (False, True), (True, False)):
        sample = timing_sample(LOAD, _snap(0, before_on, 0, None), _snap(100, after_on, 9, None))
        assert sample.write_send_ns is None
        assert timing_figures([sample])["send_us_per_response"] is None
    h2c = timing_sample(LOAD, _snap(0, True, 0, None), _snap(100, True, 500, None))
    assert timing_figures([h2c])["tls_us_per_response"] is None


def test_a_separate_timed_run_fills_the_row_of_untimed_rounds() -> None:
    rounds = [timing_sample(LOAD, _snap(0, False, 0, None), _snap(100, False, 0, None))]
    timed = timing_sample(LOAD, _snap(100, True, 0, 0), _snap(150, True, 100_000, 50_000))
    row = build_row(strategy="writev", transport="h2", body_bytes=1, driver="h2load",
                    timing=rounds, counting=None, alloc_bytes_per_response=None,
                    write_timing=timed)
    assert (row.send_us_per_response, row.tls_us_per_response) == (2.0, 1.0)
    assert row.req_per_s == 100.0  # the timed run's speed is not a round's
