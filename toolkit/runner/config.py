"""What a comparison measures: its cells, their request counts, and every check up front.

Every option is checked by :meth:`CompareConfig.validate` before any server starts: a bad
value is one UsageError, never a failure per cell later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.clients.drivers import resolve_driver
from toolkit.errors import UsageError
from toolkit.measure.verdicts import NOISE_THRESHOLD
from toolkit.strategies import TRANSPORTS, check_strategy, supports


@dataclass(frozen=True)
class TargetSpec:
    """A server that is not writeshape's: a reference server writeshape configures and
    starts per cell (``reference``, with the user's ``config`` file if any), or one that
    is already running (``target``: a toolkit.targets.ProcessTreeTarget, launched from a
    command or attached to by PID; whoever made it stops it)."""

    name: str
    reference: str | None = None
    config: str | None = None
    target: Any = None
    transport: str = "h2c"  # of a running target: its URL's scheme
    body_bytes: int = 0  # of a running target: what its URL answers
    verify_body: bool = False  # a running target's bodies need not be writeshape's pattern


@dataclass(frozen=True)
class Cell:
    """One row to measure: a strategy (or another server) on a transport and body size."""

    label: str  # unique: the strategy, "single#2" for a second copy (A/A), a server's name
    strategy: str | None  # None for a server that is not writeshape's
    transport: str
    body_bytes: int
    other: TargetSpec | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.label, self.transport, self.body_bytes)

    @property
    def server(self) -> str:
        return self.other.name if self.other is not None else "writeshape"


def labels_for(strategies: list[str]) -> list[str]:
    """A name listed twice is measured twice: the second is "NAME#2" (an A/A check)."""
    seen: dict[str, int] = {}
    out = []
    for name in strategies:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


@dataclass
class CompareConfig:
    strategies: list[str] = field(default_factory=lambda: ["single", "split", "writev"])
    transports: list[str] = field(default_factory=lambda: ["h2c", "h2"])
    body_sizes: list[int] = field(default_factory=lambda: [16 << 10, 1 << 20])
    requests: int | None = None  # per timing run; default scales with the body size
    counting_requests: int | None = None  # per counting run under strace
    connections: int = 4
    streams: int = 4
    # Timing rounds: None ("auto") runs rounds until every judged ratio's interval is
    # within +-target_half_width, or until max_seconds; a number runs that many.
    repeat: int | None = None
    max_seconds: float = 170.0  # the whole comparison, counting runs included
    min_rounds: int = 6  # the fewest whose order-statistic interval reaches 95%
    max_rounds: int = 400  # a bound on the JSON; the time budget ends rounds first
    target_half_width: float = 0.05
    # Server processes per cell (pyperf's worker processes); round i runs on worker
    # i mod workers. Measured: see NOISE_THRESHOLD (toolkit/measure/verdicts.py).
    workers: int = 4
    noise_threshold: float = NOISE_THRESHOLD
    memory_sample_ms: int = 250
    round_bytes: int = 512 << 20  # calibration load: body bytes (then rounds are timed)
    # Without --requests a round lasts about this long at the rate a calibration load
    # measured on the warm server, so every cell's round is as long as the others'.
    # Measured here (default compare, 12 cells): rounds of 0.5 s varied as much (CV
    # 10-16%) as rounds of 0.15 s, but gave 20 rounds in the budget instead of 31: the
    # noise is between rounds, not within them, and more rounds narrow the intervals.
    round_s: float = 0.2
    # Servers that are not writeshape's, as rows beside the strategies (compare --servers;
    # writeshape profile): reference servers by name, or targets already running.
    servers: list[str] = field(default_factory=list)
    reference_configs: dict[str, str] = field(default_factory=dict)  # name -> config file
    targets: list[TargetSpec] = field(default_factory=list)
    counter: str = "strace"  # "perf": also count write syscalls inside the timing rounds
    driver: str = "auto"
    strace: bool = True
    alloc_probe: bool = True
    baseline: str = "single"
    threads: bool = False
    tls_mode: str = "membio"
    warmup_requests: int = 16
    server_args: list[str] = field(default_factory=list)
    netns: bool = False
    mtu: int | None = None
    rate: str | None = None
    delay_ms: float | None = None

    def validate(self) -> None:
        if not self.strategies and not self.servers and not self.targets:
            raise UsageError("--strategies is empty")
        self.validate_options()

    def validate_options(self) -> None:
        """Every option but the list of servers (profile checks them before it starts the
        target that fills that list)."""
        if not self.transports:
            raise UsageError("--transports is empty")
        for t in self.transports:
            if t not in TRANSPORTS:
                raise UsageError(f"unknown transport {t!r}; choose h2c or h2")
        for s in self.strategies:
            check_strategy(s)
            if not any(supports(s, t) for t in self.transports):
                raise UsageError(f"{s} is a TLS strategy: add --transports h2")
        self.driver = resolve_driver(self.driver)
        if not self.body_sizes:
            raise UsageError("--body-sizes is empty")
        if min(self.body_sizes) < 1:
            raise UsageError("--body-sizes must be at least 1 byte each")
        labels = [c.label for c in self.cells()]
        if self.baseline not in labels and self.baseline == "single" and labels:
            self.baseline = labels[0]  # the default follows --strategies
        if labels and self.baseline not in labels:
            raise UsageError(f"--baseline {self.baseline!r} is not among --strategies "
                             f"({','.join(self.strategies)})")
        self._validate_servers()
        if (self.repeat is not None and self.repeat < 1) or self.connections < 1 \
                or self.streams < 1:
            raise UsageError("--repeat, --connections and --streams must be at least 1")
        if not 1 <= self.workers <= 64:
            raise UsageError("--workers must be 1 .. 64 (server processes per cell)")
        if not 1 <= self.max_seconds <= 7 * 86400:
            raise UsageError("--max-seconds must be 1 .. 604800")
        if not 0 < self.noise_threshold < 1:
            raise UsageError("--noise-threshold must be between 0 and 1 (0.1: 10%)")
        for name in ("requests", "counting_requests"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.tls_mode not in ("membio", "stdlib"):
            raise UsageError(f"--tls-mode must be membio or stdlib, not {self.tls_mode!r}")
        self._validate_driver_counts()
        self._validate_network()
        if self.strace:
            from toolkit.probes.strace import strace_wrapper

            strace_wrapper("/dev/null")  # raises MissingToolError early

    def _validate_servers(self) -> None:
        from toolkit.targets.reference import REFERENCE_SERVERS, find_program, reference_spec

        for name in self.servers:
            if name not in REFERENCE_SERVERS:
                raise UsageError(f"unknown server {name!r}; choose from "
                                 f"{', '.join(REFERENCE_SERVERS)}")
            find_program(reference_spec(name))  # not installed: one line now, not per cell
        if self.counter not in ("strace", "perf"):
            raise UsageError(f"--counter must be strace or perf, not {self.counter!r}")
        if self.counter == "perf":
            from toolkit.probes.perf_syscalls import find_perf

            find_perf()

    def _validate_driver_counts(self) -> None:
        if self.driver != "h2load":
            return
        # h2load needs at least one request per connection, in every run it makes.
        for body in self.body_sizes:
            for what, n in (("--requests", self.timing_requests(body)),
                            ("--counting-requests", self.strace_requests(body))):
                if n < self.connections:
                    raise UsageError(f"{what} {n} is fewer than --connections "
                                     f"{self.connections}: h2load needs one per connection")

    def _validate_network(self) -> None:
        shaping = {"--mtu": self.mtu, "--rate": self.rate, "--delay-ms": self.delay_ms}
        given = [flag for flag, value in shaping.items() if value is not None]
        if given and not self.netns:
            verb = "shapes" if len(given) == 1 else "shape"
            raise UsageError(f"{', '.join(given)} {verb} the link between two namespaces: "
                             "add --netns")
        if self.netns:
            from toolkit.lab.netlab import MAX_MTU, MIN_MTU, parse_rate_bits_per_s, require_root

            if self.mtu is not None and not MIN_MTU <= self.mtu <= MAX_MTU:
                raise UsageError(f"bad --mtu {self.mtu}: use {MIN_MTU} .. {MAX_MTU}")
            if self.rate is not None:
                parse_rate_bits_per_s(self.rate)
            if self.delay_ms is not None and not 0 <= self.delay_ms <= 60_000:
                raise UsageError("--delay-ms must be 0..60000")
            require_root()

    @property
    def labels(self) -> list[str]:
        return labels_for(self.strategies)

    def cells(self) -> list[Cell]:
        cells = []
        for b in self.body_sizes:
            for t in self.transports:
                cells += [Cell(label, s, t, b) for label, s in
                          zip(self.labels, self.strategies, strict=True) if supports(s, t)]
                cells += [Cell(name, None, t, b, TargetSpec(
                    name, reference=name, config=self.reference_configs.get(name)))
                    for name in self.servers]
        # Targets already running serve one transport and one body: their own.
        return cells + [Cell(spec.name, None, spec.transport, spec.body_bytes, spec)
                        for spec in self.targets]

    def timing_requests(self, body_bytes: int) -> int:
        if self.requests is not None:
            return self.requests
        # The calibration load (and the count before a rate is known): about 512 MiB,
        # within 300..3000 requests.
        return max(300, min(3000, self.round_bytes // max(body_bytes, 1)))

    def round_requests(self, body_bytes: int, rates: list[float | None]) -> int:
        """Requests per timing round: --requests, or the count that lasts ``round_s`` on
        average over the cells of one transport and body size, at the rates their
        calibration loads measured (at least one per connection, for h2load).

        One count for all of them, so each round's ratio compares the same work: a round's
        fixed costs (connections, the client's start, the slow first requests) weigh on a
        short round more, and with a count per cell two copies of one strategy differed
        by their calibrations (2,633 vs 4,038 requests a round in one A/A run: single#2
        came out 3% faster with a 10% lower p99 over 336 rounds)."""
        known = [r for r in rates if r]
        if self.requests is not None or not known:
            return self.timing_requests(body_bytes)
        # n requests take n/r_i seconds on cell i: their mean is round_s when
        # n = round_s * k / sum(1/r_i).
        n = int(self.round_s * len(known) / sum(1 / r for r in known))
        return max(self.connections * self.streams, 100, min(n, 200_000))

    def strace_requests(self, body_bytes: int) -> int:
        if self.counting_requests is not None:
            return self.counting_requests
        return max(32, min(400, self.timing_requests(body_bytes) // 4))

    def apply(self, **options: Any) -> CompareConfig:
        """Set the options that are not None (command-line flags left out stay default)."""
        for name, value in options.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            if value is not None:
                setattr(self, name, value)
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # The review's experiment: one large fixed body, h2c and h2, many requests, memory
    # before/after, req/s, latency, syscalls (HTTP.jl PR 1282 measured 100,000 requests).
    # Each cell's server lives through all its rounds: 10 rounds of 10,000 requests are the
    # review's 100,000 requests through one server, with memory sampled all along.
    "review": {"strategies": ["single", "split", "writev"], "transports": ["h2c", "h2"],
               "body_sizes": [1 << 20], "requests": 10_000, "counting_requests": 400,
               "connections": 4, "streams": 4, "repeat": 10, "workers": 1},
    # A one-minute look: fewer requests per round and per counting run, a short budget.
    # One server per cell: with two, the starts left 4 rounds in the minute (6 are needed
    # for a 95% interval), with four fewer still.
    "quick": {"max_seconds": 55.0, "counting_requests": 48, "round_s": 0.15, "workers": 1},
}


def preset(name: str | None) -> CompareConfig:
    cfg = CompareConfig()
    if name is None:
        return cfg
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return cfg.apply(**PRESETS[name])
