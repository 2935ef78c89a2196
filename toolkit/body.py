"""The response body pattern, shared by server and clients so bodies can be verified.

Byte i of every body is ``i % 251``. 251 is prime, so the pattern never lines up with
frame (16384) or record boundaries: a payload sent at the wrong offset is caught.
"""

PATTERN_PERIOD = 251


def pattern_byte(offset: int) -> int:
    return offset % PATTERN_PERIOD


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


class BodyVerifier:
    """Checks a body arriving in chunks against the pattern without holding it."""

    def __init__(self) -> None:
        self.offset = 0
        self.mismatch_at: int | None = None

    def feed(self, chunk: bytes | memoryview) -> None:
        if self.mismatch_at is None and bytes(chunk) != expected_chunk(self.offset, len(chunk)):
            exp = expected_chunk(self.offset, len(chunk))
            for i, (a, b) in enumerate(zip(bytes(chunk), exp, strict=True)):
                if a != b:
                    self.mismatch_at = self.offset + i
                    break
        self.offset += len(chunk)

    @property
    def ok(self) -> bool:
        return self.mismatch_at is None
