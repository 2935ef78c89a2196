"""Driver for the real h2load (nghttp2-client): command line, run, summary parsers.

Two summary formats are read:

* the text summary printed by every h2load (checked against nghttp2 1.52, Debian 12):
  min/max/mean/sd per metric, no percentiles, so p50/p90/p99 are None there;
* the JSON document of ``--output-file`` (nghttp2 1.69+, ``"version": "v1"``): times in
  seconds with median/p95/p99 per metric, no p90.

A figure h2load did not report is None, never 0. h2load's ``req/s`` counts every
completed response (any status), as h2load defines it; ``mbytes_per_s`` here is body
(DATA) bytes per second in 1e6-byte MB, comparable with the built-in client.
"""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolkit.clients.summary import LoadSummary
from toolkit.errors import UsageError, WriteshapeError, find_tool


class H2loadError(WriteshapeError):
    """h2load ran but failed, or printed something that is not an h2load summary."""


@dataclass
class H2loadResult:
    requests: int  # succeeded (2xx/3xx)
    failures: int  # h2load "failed": HTTP-level and network-level
    errored: int  # network-level subset of failures (resets, connect errors)
    req_per_s: float | None  # None: a run that lasted no time
    mbytes_per_s: float | None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_max: float | None = None
    latency_ms_mean: float | None = None
    ttfb_ms_p50: float | None = None
    ttfb_ms_p99: float | None = None
    ttfb_ms_mean: float | None = None
    ttfb_ms_max: float | None = None
    connect_ms_mean: float | None = None
    timeouts: int = 0
    requests_total: int = 0
    requests_started: int = 0
    requests_done: int = 0
    status_codes: dict[str, int] = field(default_factory=dict)
    traffic_bytes: int | None = None
    header_bytes: int | None = None
    body_bytes: int | None = None
    duration_s: float | None = None
    source_format: str = "text"  # "text" or "json-v1"
    command: list[str] = field(default_factory=list)
    raw_text: str = field(default="", repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, *, connections: int, streams: int, url: str) -> LoadSummary:
        """The driver-independent figures. h2load's "errored" is a subset of its "failed":
        not added twice."""
        return LoadSummary(
            driver="h2load", requests=self.requests, failures=self.failures,
            duration_s=self.duration_s, req_per_s=self.req_per_s,
            mbytes_per_s=self.mbytes_per_s, latency_ms_p50=self.latency_ms_p50,
            latency_ms_p90=self.latency_ms_p90, latency_ms_p99=self.latency_ms_p99,
            latency_ms_max=self.latency_ms_max, latency_ms_mean=self.latency_ms_mean,
            ttfb_ms_p50=self.ttfb_ms_p50, ttfb_ms_p99=self.ttfb_ms_p99,
            body_bytes_received=self.body_bytes, connections=connections, streams=streams,
            transport="h2" if url.startswith("https:") else "h2c", url=url,
            command=list(self.command))


# --- text summary (nghttp2 1.52) -------------------------------------------------------

_DURATION_UNITS_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_RE_FINISHED = re.compile(
    r"^finished in (?P<dur>[\d.]+[a-z]+), (?P<rps>[\d.]+) req/s, "
    r"(?P<bps>[\d.]+)(?P<unit>[KMG]?)B/s",
    re.M,
)
_RE_REQUESTS = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored"
    r"(?:, (?P<timeout>\d+) timeout)?",
    re.M,
)
_RE_STATUS = re.compile(r"^status codes: (?P<body>.*)$", re.M)
# 1.52: "traffic: 200.11MB (209835188) total, 2.82KB (2892) headers (space savings 90.91%),
#        200.00MB (209715200) data"; older: "traffic: 209835188 bytes total, ...".
_RE_TRAFFIC_NEW = re.compile(
    r"^traffic: \S+ \((?P<total>\d+)\) total, \S+ \((?P<headers>\d+)\) headers.*?"
    r"\S+ \((?P<data>\d+)\) data",
    re.M,
)
_RE_TRAFFIC_OLD = re.compile(
    r"^traffic: (?P<total>\d+) bytes total, (?P<headers>\d+) bytes headers.*?"
    r"(?P<data>\d+) bytes data",
    re.M,
)
_DUR = r"([\d.]+[a-z]+)"
_RE_TIME_ROW = {
    name: re.compile(rf"^{label}:\s+{_DUR}\s+{_DUR}\s+{_DUR}\s+{_DUR}\s+([\d.]+)%", re.M)
    for name, label in (
        ("request", r"time for request"),
        ("connect", r"time for connect"),
        ("ttfb", r"time to 1st byte"),
    )
}


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if m is None or m.group(2) not in _DURATION_UNITS_S:
        raise H2loadError(f"h2load printed an unknown duration {text!r}")
    return float(m.group(1)) * _DURATION_UNITS_S[m.group(2)]


def _row_ms(text: str, name: str) -> tuple[float, float, float] | None:
    """(min, max, mean) in ms of one timing row, or None when h2load had no samples."""
    m = _RE_TIME_ROW[name].search(text)
    if m is None:
        return None
    lo, hi, mean = (_duration_s(m.group(i)) * 1000.0 for i in (1, 2, 3))
    # h2load prints all-zero rows (and 0.00% within sd) for metrics it never sampled.
    if lo == 0.0 and hi == 0.0 and mean == 0.0:
        return None
    return lo, hi, mean


def parse_h2load_text(text: str, *, duration_s: float | None = None) -> H2loadResult:
    """Parses the summary h2load prints on stdout.

    ``duration_s`` overrides the measured duration (timing mode: h2load's "finished in"
    includes the warm-up, its req/s does not).
    """
    fin = _RE_FINISHED.search(text)
    req = _RE_REQUESTS.search(text)
    if fin is None or req is None:
        raise H2loadError("h2load output has no summary (no 'finished in' / 'requests:' line)")
    succeeded = int(req.group("succeeded"))
    status_codes: dict[str, int] = {}
    st = _RE_STATUS.search(text)
    if st is not None:
        for count, cls in re.findall(r"(\d+) (\dxx)", st.group("body")):
            status_codes[cls] = int(count)
    traffic = _RE_TRAFFIC_NEW.search(text) or _RE_TRAFFIC_OLD.search(text)
    total_b = int(traffic.group("total")) if traffic else None
    head_b = int(traffic.group("headers")) if traffic else None
    body_b = int(traffic.group("data")) if traffic else None
    dur = duration_s if duration_s is not None else _duration_s(fin.group("dur"))
    mbps = body_b / dur / 1e6 if body_b is not None and dur > 0 else None

    request = _row_ms(text, "request") if succeeded else None
    ttfb = _row_ms(text, "ttfb")
    connect = _row_ms(text, "connect")
    return H2loadResult(
        requests=succeeded,
        failures=int(req.group("failed")),
        errored=int(req.group("errored")),
        timeouts=int(req.group("timeout") or 0),
        req_per_s=float(fin.group("rps")) if dur > 0 else None,
        mbytes_per_s=mbps,
        latency_ms_max=request[1] if request else None,
        latency_ms_mean=request[2] if request else None,
        ttfb_ms_max=ttfb[1] if ttfb else None,
        ttfb_ms_mean=ttfb[2] if ttfb else None,
        connect_ms_mean=connect[2] if connect else None,
        requests_total=int(req.group("total")),
        requests_started=int(req.group("started")),
        requests_done=int(req.group("done")),
        status_codes=status_codes,
        traffic_bytes=total_b,
        header_bytes=head_b,
        body_bytes=body_b,
        duration_s=dur,
        source_format="text",
        raw_text=text,
    )


# --- JSON (--output-file, nghttp2 1.69+) -----------------------------------------------


def _num(obj: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, bool) or not isinstance(obj, int | float) or not math.isfinite(obj):
        return None
    return float(obj)


def _ms(obj: Any, *path: str) -> float | None:
    v = _num(obj, *path)
    return None if v is None else v * 1000.0


def parse_h2load_json(text: str) -> H2loadResult:
    """Parses the ``--output-file`` JSON document (``"version": "v1"``, times in seconds)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise H2loadError(f"h2load JSON output is not valid JSON: {exc}") from None
    m = doc.get("measurements") if isinstance(doc, dict) else None
    if not isinstance(m, dict) or not isinstance(m.get("requests"), dict):
        raise H2loadError("h2load JSON output has no 'measurements.requests' object")
    reqs = m["requests"]

    def count(key: str) -> int:
        v = _num(reqs, key)
        return int(v) if v is not None else 0

    succeeded = count("succeeded")
    duration = _num(m, "duration")
    data_b = _num(m, "traffic", "data")
    mbps = data_b / duration / 1e6 if data_b is not None and duration else None
    perf: dict[str, Any] = m.get("performance") or {}
    if not isinstance(perf, dict):
        perf = {}
    # Percentiles over zero samples are meaningless even if a number is present.
    req_perf = perf.get("request") if succeeded else None
    ttfb_perf = perf.get("ttfb")
    codes: dict[str, Any] = m.get("status_codes") or {}
    if not isinstance(codes, dict):
        codes = {}

    def opt_int(v: float | None) -> int | None:
        return None if v is None else int(v)

    return H2loadResult(
        requests=succeeded,
        failures=count("failed"),
        errored=count("errored"),
        timeouts=count("timeout"),
        req_per_s=_num(m, "request_per_second") if duration else None,
        mbytes_per_s=mbps,
        latency_ms_p50=_ms(req_perf, "median"),
        latency_ms_p90=_ms(req_perf, "p90"),  # absent in v1: stays None
        latency_ms_p99=_ms(req_perf, "p99"),
        latency_ms_max=_ms(req_perf, "max"),
        latency_ms_mean=_ms(req_perf, "mean"),
        ttfb_ms_p50=_ms(ttfb_perf, "median"),
        ttfb_ms_p99=_ms(ttfb_perf, "p99"),
        ttfb_ms_mean=_ms(ttfb_perf, "mean"),
        ttfb_ms_max=_ms(ttfb_perf, "max"),
        connect_ms_mean=_ms(perf.get("connect"), "mean"),
        requests_total=count("total"),
        requests_started=count("started"),
        requests_done=count("done"),
        status_codes={k: int(v) for k, v in codes.items() if isinstance(v, int)},
        traffic_bytes=opt_int(_num(m, "traffic", "total")),
        header_bytes=opt_int(_num(m, "traffic", "headers")),
        body_bytes=opt_int(data_b),
        duration_s=duration,
        source_format="json-v1",
        raw_text=text,
    )


# --- running it ---------------------------------------------------------------------------


def find_h2load() -> str:
    return find_tool("h2load", "nghttp2-client")


@functools.lru_cache(maxsize=8)
def supports_output_file(h2load_path: str) -> bool:
    """True if this h2load writes the JSON summary (``--output-file``, nghttp2 1.69+)."""
    proc = subprocess.run(
        [h2load_path, "--help"], capture_output=True, text=True, timeout=10, check=False
    )
    return "--output-file" in proc.stdout


def build_h2load_command(
    h2load_path: str,
    url: str,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    connections: int = 1,
    streams: int = 1,
    threads: int = 1,
    output_file: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The h2load argv for one run; validates what h2load would reject."""
    if (requests is None) == (duration_s is None):
        raise UsageError("give exactly one of a request count or a duration for h2load")
    if connections < 1 or streams < 1 or threads < 1:
        raise UsageError("h2load needs at least 1 connection, 1 stream and 1 thread")
    threads = min(threads, connections)  # h2load refuses more threads than clients
    cmd = [h2load_path]
    if requests is not None:
        if requests < connections:
            raise UsageError(
                f"h2load needs at least one request per connection ({requests} < {connections})"
            )
        cmd += ["-n", str(requests)]
    else:
        assert duration_s is not None
        if duration_s <= 0:
            raise UsageError("the h2load duration must be positive")
        cmd += ["-D", f"{max(1, round(duration_s * 1000))}ms"]
    cmd += ["-c", str(connections), "-m", str(streams), "-t", str(threads)]
    if output_file is not None:
        cmd += ["--output-file", output_file]
    cmd += list(extra_args)
    cmd.append(url)
    return cmd


def run_h2load(
    url: str,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    connections: int = 1,
    streams: int = 1,
    threads: int = 1,
    extra_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> H2loadResult:
    """Runs h2load against ``url`` and parses its summary (JSON when it can write it)."""
    if not re.match(r"^https?://[^/\s]+", url):
        raise UsageError(f"not an http:// or https:// URL: {url!r}")
    exe = find_h2load()
    with tempfile.TemporaryDirectory(prefix="writeshape-h2load-") as tmp:
        out_path = str(Path(tmp) / "h2load.json") if supports_output_file(exe) else None
        cmd = build_h2load_command(
            exe,
            url,
            requests=requests,
            duration_s=duration_s,
            connections=connections,
            streams=streams,
            threads=threads,
            output_file=out_path,
            extra_args=[*extra_args, "--log-file", str(Path(tmp) / "requests.tsv")],
        )
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise H2loadError(
                f"h2load did not finish within {timeout_s} s: lower the request count"
            ) from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise H2loadError(f"h2load exited with {proc.returncode}: {' | '.join(tail)}")
        if out_path is not None and Path(out_path).exists():
            result = parse_h2load_json(Path(out_path).read_text())
        else:
            result = parse_h2load_text(proc.stdout, duration_s=duration_s)
        log_path = Path(tmp) / "requests.tsv"
        if log_path.exists():
            apply_request_log(result, log_path.read_text())
    result.command = cmd
    if result.source_format == "json-v1":
        result.raw_text = proc.stdout + "\n" + result.raw_text
    return result


def apply_request_log(result: H2loadResult, text: str) -> None:
    """Latency percentiles from h2load's per-request log (``--log-file``).

    h2load 1.52 prints no percentiles, but logs every request: start (us since the
    epoch), status, microseconds to the end of the response. Those go into the same HDR
    histogram the built-in client uses, so both drivers report p50/p90/p99 alike.
    """
    from toolkit.clients.latency import LatencyHistogram

    hist = LatencyHistogram()
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        try:
            status, micros = int(cols[1]), int(cols[2])
        except ValueError:
            continue
        if status > 0:  # -1: a failed stream, no latency to speak of
            hist.record_us(micros)
    if hist.count:
        result.latency_ms_p50 = hist.percentile_ms(50)
        result.latency_ms_p90 = hist.percentile_ms(90)
        result.latency_ms_p99 = hist.percentile_ms(99)
        result.latency_ms_max = hist.max_ms()
