"""The response body pattern, shared by server and clients so bodies can be verified.

Byte i of every body is ``i % 251``. 251 is prime, so the pattern never lines up with
frame (16384) or record boundaries: a payload sent at the wrong offset is caught.
"""

PATTERN_PERIOD = 251


class BodyStore:
    """One immutable buffer, grown on demand; every body is a zero-copy view of its prefix."""

    def __init__(self, initial_bytes: int = 0) -> None:
        self._buf = b""
        self.ensure(initial_bytes)

    def ensure(self, n: int) -> None:
        if n > len(self._buf):
            period = bytes(range(PATTERN_PERIOD))
            self._buf = period * (n // PATTERN_PERIOD + 1)

    def view(self, n: int) -> memoryview:
        self.ensure(n)
        return memoryview(self._buf)[:n]


def expected_chunk(offset: int, n: int) -> bytes:
    """The n pattern bytes that belong at ``offset`` of any body."""
    period = bytes(range(PATTERN_PERIOD))
    start = offset % PATTERN_PERIOD
    reps = (start + n) // PATTERN_PERIOD + 1
    return (period * reps)[start:start + n]


# A pattern slab longer than any frame, so a chunk of up to _SLAB bytes at any offset
# is one slice of it: verification is a memcmp, never per-byte Python work.
_SLAB = 1 << 16
_PATTERN_SLAB = bytes(range(PATTERN_PERIOD)) * (_SLAB // PATTERN_PERIOD + 2)


def matches_pattern(buf: bytes | bytearray, start: int, n: int, offset: int) -> bool:
    """True if ``buf[start:start+n]`` holds the body bytes at ``offset`` (no copy of buf)."""
    while n > 0:
        k = min(n, _SLAB)
        p = offset % PATTERN_PERIOD
        with memoryview(_PATTERN_SLAB) as slab:
            if not buf.startswith(slab[p:p + k], start):
                return False
        start += k
        offset += k
        n -= k
    return True

