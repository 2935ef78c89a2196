"""nginx as a reference server: its configuration, generated (pure), and its command line.

Chosen settings, and why (everything else is nginx 1.22's default):

- ``sendfile off``: with sendfile on, an h2c body goes from the page cache to the socket
  inside the kernel (nginx alternates writev for frame headers and sendfile for payloads),
  a path none of writeshape's strategies takes. Off, nginx reads the file into its
  ``output_buffers`` and writes frame headers and payloads from userspace with writev,
  like writeshape's strategies do. Under TLS nginx never uses sendfile (no kTLS here).
- ``http2_chunk_size 8k``, ``ssl_buffer_size 16k``, ``output_buffers 2 32k``: the
  defaults, written out so the config says what ran: 8 KiB DATA frames (not the 16 KiB
  the client allows), one SSL_write per 16 KiB of buffered frames, the body read 32 KiB
  at a time. Kept, not tuned: a reference shows what deployed nginx does.
- ``tcp_nodelay on``, ``tcp_nopush off``: the defaults, written out.
- ``keepalive_requests 1000000``: nginx >= 1.19.7 sends GOAWAY after this many requests
  on an HTTP/2 connection (default 1000), which would cut a load run short.
- ``access_log off``: a log line per request is a write() to a file, not the response's
  write path (and perf, which cannot tell files from sockets, would count it).
- ``worker_processes 1``: one worker, as writeshape's own server is one process.
- temp paths, pid file and error log (stderr) in writeshape's folder: Debian's compiled-in
  /var/lib/nginx and /run paths need not exist or be writable.
"""

from __future__ import annotations

from toolkit.targets.layout import ReferenceLayout

SETTINGS = {
    "sendfile": "off", "http2_chunk_size": "8k", "ssl_buffer_size": "16k",
    "output_buffers": "2 32k", "tcp_nodelay": "on", "tcp_nopush": "off",
    "keepalive_requests": "1000000", "access_log": "off", "worker_processes": "1",
}


def render_config(layout: ReferenceLayout) -> str:
    s = SETTINGS
    tmp = layout.tmp
    host = f"[{layout.host}]" if ":" in layout.host else layout.host  # IPv6 in brackets
    listen = f"{host}:{layout.port}" + (" ssl" if layout.tls else "") + " http2"
    tls = ""
    if layout.tls:
        tls = (f"        ssl_certificate {layout.cert_path};\n"
               f"        ssl_certificate_key {layout.key_path};\n"
               "        ssl_protocols TLSv1.2 TLSv1.3;\n"
               f"        ssl_buffer_size {s['ssl_buffer_size']};\n")
    return (
        f"# written by writeshape (toolkit/targets/nginx.py)\n"
        f"daemon off;\nmaster_process on;\nworker_processes {s['worker_processes']};\n"
        f"pid {tmp}/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    types { text/html html; }\n    default_type application/octet-stream;\n"
        f"    access_log {s['access_log']};\n    sendfile {s['sendfile']};\n"
        f"    tcp_nodelay {s['tcp_nodelay']};\n    tcp_nopush {s['tcp_nopush']};\n"
        f"    output_buffers {s['output_buffers']};\n"
        f"    http2_chunk_size {s['http2_chunk_size']};\n"
        f"    keepalive_requests {s['keepalive_requests']};\n"
        + "".join(f"    {kind}_temp_path {tmp}/{kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + "    server {\n"
        f"        listen {listen};\n        root {layout.root};\n        index index.html;\n"
        f"{tls}"
        "    }\n}\n"
    )


def argv(exe: str, layout: ReferenceLayout, config_path: str) -> list[str]:
    # -p: relative paths of a user's config resolve in writeshape's folder;
    # -e: start-up errors go to stderr before the config's error_log applies.
    return [exe, "-c", config_path, "-p", layout.tmp + "/", "-e", "stderr"]
