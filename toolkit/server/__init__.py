"""The writeshape HTTP/2 server.

- `core`: one connection's HTTP/2 server, sans I/O (h2, the guard, routing, flushes);
- `strategies` (toolkit/strategies.py) and `write_path`: how a flush becomes syscalls;
- `connection` and `shell`: sockets, TLS, the event loop, stream threads;
- `process`: a server as a child process, for the runner, the plugin and the tests.
"""

from toolkit.server.config import ServerConfig

__all__ = ["ServerConfig"]
