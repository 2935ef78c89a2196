"""The servers a comparison times, behind one interface: writeshape's own, and any other.

- :class:`OwnServer`: a ``writeshape serve`` process; its counters come from ``/stats``
  and ``/mem`` (settled, after a forced collection), its memory series from the server's
  own sampler, its allocation per response from tracemalloc inside it.
- :class:`OtherServer`: any HTTP/2 server as a process tree (a reference server writeshape
  configured, a command it started, or a PID it attached to); what it cannot report about
  itself is read from outside: CPU and RSS of the whole tree (psutil), memory over time
  sampled from outside; no live heap, no allocation probe (None, with the reason in meta).

Both give :class:`~toolkit.measure.snapshot.Snapshot` s, so a timing round is measured the
same way for either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from toolkit.clients.summary import LoadSummary
from toolkit.measure.rows import TimingSample
from toolkit.measure.snapshot import Snapshot, refreshed, take_snapshot, timing_sample
from toolkit.probes.alloc import measure_alloc_per_response
from toolkit.server.process import ServerProcess
from toolkit.targets import ProcessTreeTarget, ReferenceServer

MEMORY_SAMPLE_S = 0.25


class TimedServer(Protocol):
    @property
    def load_url(self) -> str: ...  # what the loads request

    verify_body: bool  # serves writeshape's byte pattern (clients can check bodies)
    round_requests: int  # requests per timing round, set when the server is calibrated
    calibration_req_per_s: float | None  # the rate its calibration load measured

    def snapshot(self, *, after_load: bool) -> Snapshot: ...

    def refreshed(self, last: Snapshot) -> Snapshot: ...

    def loaded(self, load: LoadSummary) -> None: ...

    def memory_series(self) -> dict[str, Any] | None: ...

    def alloc_probe(self, call: Any) -> int | None: ...

    def write_timing(self, load: Callable[[str], LoadSummary]) -> TimingSample | None: ...

    def pids(self) -> tuple[int, ...]: ...

    def stop(self) -> None: ...


@dataclass
class OwnServer:
    process: ServerProcess
    verify_body: bool = True
    round_requests: int = 0
    calibration_req_per_s: float | None = None

    @property
    def load_url(self) -> str:
        return f"{self.process.url}/"

    def snapshot(self, *, after_load: bool) -> Snapshot:
        return take_snapshot(self.process, after_load=after_load)

    def refreshed(self, last: Snapshot) -> Snapshot:
        return refreshed(self.process, last)

    def loaded(self, load: LoadSummary) -> None:
        """The server counts its own responses."""

    def memory_series(self) -> dict[str, Any] | None:
        return self.process.memory_series()

    def alloc_probe(self, call: Any) -> int | None:
        return int(call(measure_alloc_per_response, self.process.url, "/", samples=5))

    def write_timing(self, load: Callable[[str], LoadSummary]) -> TimingSample | None:
        """One load with the server's write timing switched on, between two snapshots."""
        process = self.process
        process.set_write_timing(True)
        try:
            before = take_snapshot(process)
            summary = load(self.load_url)
            after = take_snapshot(process, after_load=True)
        finally:
            process.set_write_timing(False)
        return timing_sample(summary, before, after)

    def pids(self) -> tuple[int, ...]:
        return (self.process.server_pid,) if self.process.server_pid else ()

    def stop(self) -> None:
        self.process.stop()
        self.process.cleanup()


class OtherServer:
    """A server that is not writeshape's. ``reference``: writeshape started and configured
    it (stopped here); else ``target`` was launched (stopped here) or attached (never)."""

    verify_body: bool
    round_requests: int
    calibration_req_per_s: float | None

    def __init__(self, target: ProcessTreeTarget, *, reference: ReferenceServer | None = None,
                 verify_body: bool = False) -> None:
        self.target = target
        self.reference = reference
        self.verify_body = verify_body
        self.round_requests = 0
        self.calibration_req_per_s = None
        self.load_url = target.url
        self.requests_served = 0  # by our loads: the x of the memory series
        self._samples: list[tuple[float, int, None, int]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._sampler = threading.Thread(target=self._sample, name="tree-memory", daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_S):
            try:
                rss = self.target.rss_bytes()
            except Exception:  # the tree is gone: nothing more to sample
                return
            self._samples.append((round(time.monotonic() - self._t0, 3), rss, None,
                                  self.requests_served))

    def snapshot(self, *, after_load: bool) -> Snapshot:
        usage = self.target.usage(pss=False)  # the snapshot reads RSS and CPU only
        return Snapshot(stats={"responses": self.requests_served},
                        mem={"rss_bytes": usage.rss_bytes, "live_heap_bytes": None},
                        cpu_s=usage.cpu_s, settled=True)

    def refreshed(self, last: Snapshot) -> Snapshot:
        return self.snapshot(after_load=False)

    def loaded(self, load: LoadSummary) -> None:
        # What the server served is what the client completed (it counts no control
        # requests: there are none).
        self.requests_served += load.requests

    def memory_series(self) -> dict[str, Any] | None:
        return {"interval_s": MEMORY_SAMPLE_S, "samples": [list(s) for s in self._samples]}

    def alloc_probe(self, call: Any) -> int | None:
        return None  # tracemalloc lives inside writeshape's own server only

    def write_timing(self, load: Callable[[str], LoadSummary]) -> TimingSample | None:
        return None  # the timers are writeshape's server's own

    def pids(self) -> tuple[int, ...]:
        return self.target.pids()

    def stop(self) -> None:
        self._stop.set()
        if self.reference is not None:
            self.reference.stop()
        elif self.target.owned:
            self.target.stop()
            self.target.cleanup()


def start_other_server(cell: Any) -> OtherServer:
    """The cell's server when it is not writeshape's: a reference server started and
    configured now (stopped with it), or the running target the cell names."""
    spec = cell.other
    if spec.reference is not None:
        ref = ReferenceServer(spec.reference, transport=cell.transport,
                              body_bytes=cell.body_bytes, config_path=spec.config).start()
        assert ref.target is not None
        # Reference servers serve writeshape's byte pattern: bodies can be checked.
        return OtherServer(ref.target, reference=ref, verify_body=True)
    return OtherServer(spec.target, verify_body=spec.verify_body)
