"""uvloop against asyncio: the same writev server on each loop, h2load -D 1 -c 4 -m 4 on each
in every round (order alternating), 9 rounds; the median of the per-round ratios with its
exact 95% interval, for req/s and for CPU per request (/stats process_cpu_ns).

    PATH=.venv/bin:$PATH .venv/bin/python docs/runs/uvloop_vs_asyncio.py
    (the output of 2026-12-02 is in uvloop-vs-asyncio.txt)
"""

from __future__ import annotations

import re
import subprocess

from toolkit.measure.stats import median_interval, paired_ratios
from toolkit.server.process import ServerOptions, ServerProcess

LOOPS = ("asyncio", "uvloop")
ROUNDS = 9


def h2load_req_per_s(url: str) -> float:
    out = subprocess.run(["h2load", "-D", "1", "-c", "4", "-m", "4", url],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    m = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    assert m, out
    return float(m[1])


def one_cell(body: int, tls: bool) -> str:
    servers = {loop: ServerProcess(ServerOptions(
        strategy="writev", body_bytes=body, tls=tls, tls_probe=not tls,
        extra_args=("--loop", loop))).start() for loop in LOOPS}
    rps: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    cpu: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    try:
        for r in range(ROUNDS):
            for loop in LOOPS if r % 2 == 0 else LOOPS[::-1]:
                srv = servers[loop]
                before = srv.stats()
                rps[loop].append(h2load_req_per_s(srv.url + "/"))
                after = srv.stats()
                served = max(1, after["responses"] - before["responses"])
                cpu[loop].append((after["process_cpu_ns"] - before["process_cpu_ns"]) / served)
    finally:
        for srv in servers.values():
            srv.stop()
    r_int = median_interval(paired_ratios(rps["uvloop"], rps["asyncio"]))
    c_int = median_interval(paired_ratios(cpu["uvloop"], cpu["asyncio"]))
    assert r_int and c_int
    base = sorted(rps["asyncio"])[ROUNDS // 2]
    return (f"{'h2' if tls else 'h2c'} {body}: uvloop/asyncio req/s {r_int.median:.3f} "
            f"[{r_int.ci_low:.3f}-{r_int.ci_high:.3f}], CPU/req {c_int.median:.3f} "
            f"[{c_int.ci_low:.3f}-{c_int.ci_high:.3f}]; asyncio req/s median {base:.0f}")


if __name__ == "__main__":
    for body in (16384, 1 << 20):
        for tls in (False, True):
            print(one_cell(body, tls), flush=True)
