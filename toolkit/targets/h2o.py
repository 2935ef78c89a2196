"""h2o as a reference server: its YAML configuration (pure) and command line.

Chosen settings, and why (everything else is h2o 2.2's default):

- ``num-threads: 1``: one event loop, as writeshape's own server has.
- ``-m worker``: h2o itself is the process (no start_server master, no daemon).
- no ``access-log``: h2o logs nothing per request unless told to (a log write would be a
  write() to a file, counted by perf).
- file handler (``file.dir``): h2o reads the body with pread() into its own buffers and
  copies DATA frames into a connection write buffer (about 80 KiB per writev in h2c); under
  TLS it sizes records itself (small ones for the first bytes of a connection, then
  16 KiB; not configurable in 2.2). Nothing to switch: it has no sendfile path for HTTP/2.
- its default crash handler stays: a ``perl annotate-backtrace-symbols`` child that only
  reads, so the profiled tree has two processes.
- TLS: ``minimum-version: TLSv1.2``; OpenSSL negotiates 1.3 when the client offers it.
  ``ocsp-update-interval: 0``: no OCSP stapling. A throwaway certificate has no responder,
  and h2o would otherwise run ``fetch-ocsp-response`` (perl, a child process that comes and
  goes and writes to a pipe) during the measurement.
"""

from __future__ import annotations

import json

from toolkit.targets.layout import ReferenceLayout

SETTINGS = {"num-threads": "1", "mode": "worker", "access-log": "none",
            "minimum-version": "TLSv1.2", "ocsp-update-interval": "0"}


def render_config(layout: ReferenceLayout) -> str:
    q = json.dumps  # a JSON string is a valid YAML scalar, whatever the path holds
    lines = ["# written by writeshape (toolkit/targets/h2o.py)",
             f"num-threads: {SETTINGS['num-threads']}"]
    lines += ["listen:", f"  host: {q(layout.host)}", f"  port: {layout.port}"]
    if layout.tls:
        lines += ["  ssl:", f"    certificate-file: {q(layout.cert_path)}",
                  f"    key-file: {q(layout.key_path)}",
                  f"    minimum-version: {SETTINGS['minimum-version']}",
                  f"    ocsp-update-interval: {SETTINGS['ocsp-update-interval']}"]
    lines += ["hosts:", "  default:", "    paths:", '      "/":',
              f"        file.dir: {q(layout.root)}"]
    return "\n".join(lines) + "\n"


def argv(exe: str, layout: ReferenceLayout, config_path: str) -> list[str]:
    return [exe, "-m", SETTINGS["mode"], "-c", config_path]
