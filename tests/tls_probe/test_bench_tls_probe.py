"""Overhead of counting: InstrumentedTLS against the same path through MemoryBioTLS.

Both write 1 MiB as 64 SSL_writes of 16 KiB on an established TLS 1.3 connection and
drain the outgoing BIO with take_ciphertext, once per flush:
- `flush1m`: one flush for the whole 1 MiB (a response sent in one go);
- `flush64k`: one flush per 4 SSL_writes (64 KiB, the default HTTP/2 window, nghttpd's buffer);
- `per_write`: one flush per SSL_write (`split`-like). The counters' worst case: an
  SSL_write + take of 16 KiB costs only ~5 us with AES-NI, so the ~0.3 us of Python per
  flush (check the flush's shape, count the write) weighs most here.

`test_bench_tls_write_1mib` records each variant for the benchmark JSON. The asserted
ratio comes from `test_instrumented_throughput_ratio`, which runs the two variants back
to back inside one benchmark, alternating which goes first, so that load from other
processes on a shared machine hits both alike: each round gives one ratio (plain time /
instrumented time, the instrumented path's relative throughput) and the median of those
is asserted (see `Interleaved`).

Both run for the two counter paths: `c` (tls_probe/_recordwalk.c, what `make test`
builds; the issue's target, >= 0.95, is asserted) and `py` (an install without a C
compiler: slower per flush, guarded against regressions only, see PY_MIN_RATIO).

`test_server_tls_path_ratio` measures the path the server runs for a 1 MiB response,
per TLS strategy: the strategy's plan (`plan_tls`), its SSL_writes and flushes through
`tls_socket_calls`, and `SocketWriter` writing the ciphertext to a real loopback TCP
socket drained by another process. That is the path `writeshape serve --tls` runs
with (`InstrumentedTLS`) and without (`--no-tls-probe`, `MemoryBioTLS`) the probe. Its
ratio per strategy is in extra_info; see SERVER_PATH_MIN_RATIO for what is asserted.
"""

from __future__ import annotations

import functools
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from bench_rounds import run_rounds
from pytest_benchmark.fixture import BenchmarkFixture

from tls_probe import InstrumentedTLS, MemoryBioTLS, make_cert_bundle, make_client_context
from tls_probe.certs import CertBundle, make_server_context
from tls_probe.records import NATIVE_RECORD_TALLY
from toolkit.protocol.frames import data_frame_header
from toolkit.server.socket_writer import SendCounters, SocketWriter
from toolkit.server.tls_plan import tls_socket_calls
from toolkit.strategies import STRATEGIES, Buffer, make_strategy, strategy_names

WRITE_BYTES = 16384
TOTAL_BYTES = 1 << 20
WRITES_PER_FLUSH = {"flush1m": 64, "flush64k": 4, "per_write": 1}
# Minimum throughput of the instrumented path relative to the uninstrumented one: the
# issue's 0.95 with the C counter (measured 0.97-0.99 per_write, the worst case). The
# pure-Python counter measured 0.88-0.92 per_write, 0.91-0.97 per flush of 64 KiB or
# more (a few hundred ns of bytecode per flush against ~6 us of AES per 16 KiB): it
# does not meet the target; asserted at 0.85 in this micro benchmark. On the server's
# own TLS path (test_server_tls_path_ratio) it measured 0.92-1.00 across the strategies,
# which the README states as "3% to 10%": asserted there at 0.88.
MIN_RATIO = 0.95
PY_MIN_RATIO = 0.85
PY_SERVER_PATH_MIN_RATIO = 0.88
ROUNDS = 300
COUNTERS = {"c": True, "py": False}


def counter_path(name: str) -> Callable[..., InstrumentedTLS]:
    if COUNTERS[name] and not NATIVE_RECORD_TALLY:
        pytest.skip("tls_probe._recordwalk not built (test_tls_probe_native fails for that)")
    return functools.partial(InstrumentedTLS, native=COUNTERS[name])


class Interleaved:
    """Two variants run back to back, alternating which goes first; each round's pair
    of times gives one ratio, plain / counted: the counted variant's relative throughput.

    The median of the per-round ratios is the estimate: a burst of load from elsewhere
    lands on one round's pair (both variants alike, or one outlier the median ignores),
    and slow drift cancels within a pair."""

    ORDER = (("plain", "counted"), ("counted", "plain"))

    def __init__(self, plain: Callable[[], None], counted: Callable[[], None]) -> None:
        self.runs = {"plain": plain, "counted": counted}
        self.times_s: dict[str, list[float]] = {"plain": [], "counted": []}
        self.rounds = 0

    def round(self) -> None:
        for name in self.ORDER[self.rounds % 2]:
            start = time.perf_counter()
            self.runs[name]()
            self.times_s[name].append(time.perf_counter() - start)
        self.rounds += 1

    def ratio(self) -> float:
        return statistics.median(
            p / c for p, c in zip(self.times_s["plain"], self.times_s["counted"], strict=True)
        )

    def checked_ratio(self, floor: float, extra_info: dict[str, object]) -> float:
        """The ratio; when it is under `floor`, as many rounds again are run and the
        ratio of all of them is the result (a noisy stretch on a shared machine is
        diluted, a real cost is not: it is in every round)."""
        ratio = first = self.ratio()
        if ratio < floor:
            for _ in range(self.rounds):
                self.round()
            ratio = self.ratio()
        extra_info.update({
            "throughput_ratio_median_of_rounds": ratio,
            "first_take_ratio": first,
            "rounds": self.rounds,
            "plain_mbytes_per_s": TOTAL_BYTES / statistics.median(self.times_s["plain"]) / 1e6,
            "instrumented_mbytes_per_s":
                TOTAL_BYTES / statistics.median(self.times_s["counted"]) / 1e6,
        })
        return ratio


@pytest.fixture(scope="module")
def bundle() -> Iterator[CertBundle]:
    b = make_cert_bundle()
    yield b
    b.cleanup()


def established(bundle: CertBundle, cls: Callable[..., MemoryBioTLS]) -> MemoryBioTLS:
    server = cls(make_server_context(bundle=bundle)[0], server_side=True)
    client = MemoryBioTLS(
        make_client_context(bundle.ca_pem_path), server_side=False, server_hostname="localhost"
    )
    for _ in range(10):
        done = client.do_handshake() & server.do_handshake()
        client.feed_ciphertext(server.take_ciphertext())
        server.feed_ciphertext(client.take_ciphertext())
        if done:
            return server
    raise AssertionError("handshake did not complete")


def write_1mib(tls: MemoryBioTLS, writes_per_flush: int) -> Callable[[], None]:
    chunk = memoryview(bytes(WRITE_BYTES))
    flushes = range(TOTAL_BYTES // WRITE_BYTES // writes_per_flush)
    write, take = tls.write_plaintext, tls.take_ciphertext
    if writes_per_flush == 1:

        def run() -> None:
            for _ in flushes:
                write(chunk)
                take()

    else:
        per_flush = range(writes_per_flush)

        def run() -> None:
            for _ in flushes:
                for _ in per_flush:
                    write(chunk)
                take()

    return run


def check_counts(tls: InstrumentedTLS, rounds: int) -> None:
    stats = tls.stats
    assert stats.ssl_writes == rounds * TOTAL_BYTES // WRITE_BYTES
    assert stats.record_sizes[WRITE_BYTES + 22] == stats.ssl_writes  # one record per write
    assert stats.ciphertext_bytes == stats.record_bytes


@pytest.mark.parametrize("path", list(WRITES_PER_FLUSH))
@pytest.mark.parametrize("variant", ["plain", "c", "py"])
def test_bench_tls_write_1mib(
    benchmark: BenchmarkFixture, bundle: CertBundle, variant: str, path: str
) -> None:
    tls = established(bundle, MemoryBioTLS if variant == "plain" else counter_path(variant))
    benchmark.group = f"tls-write-1MiB-{path}"
    run_rounds(benchmark, write_1mib(tls, WRITES_PER_FLUSH[path]), ROUNDS, warmup_rounds=10)
    if isinstance(tls, InstrumentedTLS):
        check_counts(tls, ROUNDS + 10)


@pytest.mark.parametrize("path", list(WRITES_PER_FLUSH))
@pytest.mark.parametrize("counter", list(COUNTERS))
def test_instrumented_throughput_ratio(
    benchmark: BenchmarkFixture, bundle: CertBundle, counter: str, path: str
) -> None:
    counted = established(bundle, counter_path(counter))
    assert isinstance(counted, InstrumentedTLS)
    runs = Interleaved(write_1mib(established(bundle, MemoryBioTLS), WRITES_PER_FLUSH[path]),
                       write_1mib(counted, WRITES_PER_FLUSH[path]))
    benchmark.group = f"tls-write-1MiB-{path}-interleaved"
    run_rounds(benchmark, runs.round, ROUNDS, warmup_rounds=10)
    floor = MIN_RATIO if COUNTERS[counter] else PY_MIN_RATIO
    ratio = runs.checked_ratio(floor, benchmark.extra_info)
    check_counts(counted, runs.rounds)
    print(f"\n{counter} {path}: instrumented/plain throughput {ratio:.3f}")
    assert ratio >= floor, (
        f"{path}: instrumented ({counter} counter) at {ratio:.1%} of uninstrumented throughput "
        f"(median of {runs.rounds} interleaved rounds)"
    )


SERVER_PATH_ROUNDS = 300
# The target, 0.95, for the C counter. Measured on this 2-core VM (median of 300
# interleaved rounds): split 0.98-0.99, writev 0.97-1.00, cork 0.99, chain 0.98-0.99,
# coalesce 1.00, single 1.00; an A/A run of the same harness (plain against plain):
# 0.99-1.01. The Python counter measured 0.92-0.97 (one take_ciphertext per SSL_write:
# 128 per 1 MiB response for split and writev) and is guarded at PY_MIN_RATIO.
TLS_STRATEGIES = strategy_names("h2")


def response_segments(body_bytes: int = TOTAL_BYTES, frame_bytes: int = 16384) -> list[Buffer]:
    """One flush of a response as the server builds it: DATA headers and body views."""
    body = memoryview(bytes(body_bytes))
    segs: list[Buffer] = []
    for off in range(0, body_bytes, frame_bytes):
        payload = body[off : off + frame_bytes]
        segs += [data_frame_header(len(payload), 1, off + frame_bytes >= body_bytes), payload]
    return segs


@pytest.fixture
def drained_socket() -> Iterator[Callable[[], socket.socket]]:
    """Blocking loopback TCP sockets whose peer is read and discarded by a child process."""
    made: list[tuple[socket.socket, subprocess.Popen[bytes]]] = []

    def make() -> socket.socket:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sender = socket.create_connection(listener.getsockname())
            receiver, _ = listener.accept()
        with receiver:
            reader = subprocess.Popen(
                [sys.executable, "-c", "import os\nwhile os.read(0, 1 << 20): pass"],
                stdin=receiver.fileno(),
            )
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the server does
        made.append((sender, reader))
        return sender

    yield make
    for sender, reader in made:
        sender.close()
        reader.wait(10)


@pytest.mark.parametrize("counter", list(COUNTERS))
@pytest.mark.parametrize("strategy", TLS_STRATEGIES)
def test_server_tls_path_ratio(
    benchmark: BenchmarkFixture,
    bundle: CertBundle,
    drained_socket: Callable[[], socket.socket],
    strategy: str,
    counter: str,
) -> None:
    segs = response_segments()
    variants = {}
    for name, cls in (("plain", MemoryBioTLS), ("counted", counter_path(counter))):
        tls = established(bundle, cls)
        writer = SocketWriter(drained_socket(), SendCounters())
        plan = make_strategy(strategy, tls=True).plan_tls

        def respond(tls: MemoryBioTLS = tls, writer: SocketWriter = writer,
                    plan: Callable[..., Iterator] = plan) -> None:
            for call in tls_socket_calls(tls, plan(segs)):
                assert writer.submit(call)  # blocking socket: written whole

        variants[name] = (tls, writer, respond)
    runs = Interleaved(variants["plain"][2], variants["counted"][2])
    benchmark.group = f"tls-server-path-1MiB-interleaved-{counter}"
    run_rounds(benchmark, runs.round, SERVER_PATH_ROUNDS, warmup_rounds=5)
    floor = MIN_RATIO if COUNTERS[counter] else PY_SERVER_PATH_MIN_RATIO
    ratio = runs.checked_ratio(floor, benchmark.extra_info)
    counted = variants["counted"][0]
    assert isinstance(counted, InstrumentedTLS)
    # The counters saw every response: records as the shape dictates, bytes as sent.
    stats = counted.stats
    responses = runs.rounds  # warm-up rounds included
    assert stats.ciphertext_bytes - stats.handshake_record_bytes == \
        variants["counted"][1].counters.bytes_sent
    assert stats.plaintext_bytes == responses * sum(map(len, segs))
    per_response = stats.application_records / responses
    # 64 frames of 16 KiB: whole records (64 or 65, as the 9-byte headers spill over), or
    # a record per header on top of a record per payload.
    if STRATEGIES[strategy].shape.header_records:
        assert per_response == 128, per_response
    else:
        assert per_response in (64, 65), per_response
    benchmark.extra_info.update({"strategy": strategy, "records_per_response": per_response})
    print(f"\n{strategy} ({counter}): instrumented/plain throughput {ratio:.3f} "
          f"({benchmark.extra_info['instrumented_mbytes_per_s']:.0f} vs "
          f"{benchmark.extra_info['plain_mbytes_per_s']:.0f} MB/s)")
    assert ratio >= floor, (
        f"{strategy}: the server's TLS path with the probe ({counter} counter) runs at "
        f"{ratio:.1%} of its throughput without it (median of {runs.rounds} rounds)")
