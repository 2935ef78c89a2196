"""Shared by the load and h2load tests (no tests here): nghttpd serving pattern bodies."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from toolkit.protocol.body import BodyStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_docroot(root: Path, sizes: tuple[int, ...]) -> None:
    store = BodyStore(max(sizes))
    (root / "bytes").mkdir(parents=True, exist_ok=True)
    for n in sizes:
        (root / "bytes" / str(n)).write_bytes(bytes(store.view(n)))


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return key, cert


@contextmanager
def nghttpd(docroot: Path, *, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    port = free_port()
    cmd = ["nghttpd", "-d", str(docroot)]
    cmd += [str(port), str(tls[0]), str(tls[1])] if tls else ["--no-tls", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("nghttpd did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=5)
