"""nghttpd (nghttp2's example server) as a reference server: command line only.

nghttpd has no configuration file; its defaults are kept: one worker thread (``-n 1``,
written out), DATA with NO_COPY but frame headers and payloads copied into a 64 KiB
write buffer, one write() or SSL_write per fill. It serves ``-d`` (a directory's
index.html for ``/``).
"""

from __future__ import annotations

from toolkit.targets.layout import ReferenceLayout

SETTINGS = {"workers": "1"}


def render_config(layout: ReferenceLayout) -> None:
    return None


def argv(exe: str, layout: ReferenceLayout, config_path: str | None) -> list[str]:
    args = [exe, "-a", layout.host, "-d", layout.root, "-n", SETTINGS["workers"]]
    if not layout.tls:
        return [*args, "--no-tls", str(layout.port)]
    assert layout.key_path and layout.cert_path
    return [*args, str(layout.port), layout.key_path, layout.cert_path]
