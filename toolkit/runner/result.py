"""A comparison's result: its rows and the meta that says how they were made."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from toolkit.measure.rows import ResultRow
from toolkit.runner.config import CompareConfig

CI_METHOD = ("exact order-statistic (binomial) 95% interval of the median of per-round "
             "paired ratios")


def collect_meta(cfg: CompareConfig, command: str) -> dict[str, Any]:
    import ssl
    from importlib.metadata import PackageNotFoundError, version

    from tls_probe.records import RECORD_COUNTER
    from toolkit.runner.cells import tls_records_from

    versions: dict[str, str | None] = {}
    for pkg in ("writeshape", "h2", "hyperframe", "hpack", "psutil", "pyroute2", "rich",
                "hdrhistogram"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    versions["openssl"] = ssl.OPENSSL_VERSION
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "versions": versions,
        "driver": cfg.driver,
        "cpus": os.cpu_count(),
        "connections": cfg.connections,
        "streams": cfg.streams,
        "repeat": "auto" if cfg.repeat is None else cfg.repeat,
        "max_seconds": cfg.max_seconds if cfg.repeat is None else None,
        "target_half_width": cfg.target_half_width,
        # Server processes per cell; a round's "worker" says which one ran it.
        "workers": cfg.workers,
        # Verdicts: a ratio whose interval lies within +-noise_threshold of 1 is "same",
        # wholly beyond it "better"/"worse", across it "inconclusive".
        "noise_threshold": cfg.noise_threshold,
        "ci_method": CI_METHOD,
        "strace": cfg.strace,
        "baseline": cfg.baseline,
        # Where the TLS records come from: "counting" (timing runs are probe-free) or
        # "timing" (--no-strace: the timing runs parse them).
        "tls_records_from": tls_records_from(cfg),
        # The probe's record counter in this install: "c" (tls_probe/_recordwalk.c) or
        # "python" (no compiler at install: a few % more per flush in a timing run).
        "tls_record_counter": RECORD_COUNTER,
        "netns": cfg.netns,
        "server_args": list(cfg.server_args),
    }


@dataclass
class CompareResult:
    meta: dict[str, Any]
    rows: list[ResultRow]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "results": [r.to_dict() for r in self.rows]}

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    @classmethod
    def load(cls, path: str) -> CompareResult:
        from toolkit.reports.files import load_results

        return load_results(path)
