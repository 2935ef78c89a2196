"""writeshape: how HTTP/2 DATA frames reach the socket, measured."""

__version__ = "0.1.0"
