"""Primitive readers for dlib's binary serialisation format (``dlib/serialize.h``).

dlib writes integers as one header byte (low 4 bits: byte count, bit 0x80: negative) followed by
little-endian magnitude bytes; bools as ASCII ``'0'``/``'1'``; floats as a packed int64 mantissa and
a packed int16 exponent (value = m * 2**e); strings as a packed length and raw bytes; and tensors
(version 2) as four packed dimensions followed by raw little-endian float32 values.
"""

from __future__ import annotations

import math

import numpy as np

# dlib writes inf, -inf and NaN as mantissa 0 with these exponents.
_SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialisation format at the reported offset."""


class DlibReader:
    """A cursor over the bytes of a dlib-serialised object."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        if n < 0:  # a length read from the data (a string's, a tensor's), which is not one
            raise DlibFormatError(f"negative length {n} at byte {self.pos}")
        if self.pos + n > len(self.data):
            raise DlibFormatError(
                f"unexpected end of data at byte {self.pos}: wanted {n} bytes, "
                f"{len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def int(self) -> int:
        start = self.pos
        header = self._take(1)[0]
        size = header & 0x0F
        if size > 8 or header & 0x70:
            raise DlibFormatError(f"bad integer header 0x{header:02x} at byte {start}")
        value = int.from_bytes(self._take(size), "little")
        return -value if header & 0x80 else value

    def bool(self) -> bool:
        start = self.pos
        ch = self._take(1)[0]
        if ch not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{ch:02x} at byte {start}")
        return ch == ord("1")

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if mantissa == 0 and exponent in _SPECIAL_EXPONENTS:
            return _SPECIAL_EXPONENTS[exponent]
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        return bytes(self._take(n)).decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        start = self.pos
        try:
            s = self.string()
        except DlibFormatError as exc:
            raise DlibFormatError(f"expected one of {allowed} at byte {start}: {exc}") from exc
        if s not in allowed:
            raise DlibFormatError(f"expected one of {allowed} at byte {start}, got {s!r}")
        return s

    def expect_int(self, *allowed: int, what: str = "version") -> int:
        start = self.pos
        v = self.int()
        if v not in allowed:
            raise DlibFormatError(f"expected {what} in {allowed} at byte {start}, got {v}")
        return v

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version 2, dims (N, K, R, C), float32 data."""
        self.expect_int(2, what="tensor version")
        dims = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in dims):
            raise DlibFormatError(f"negative tensor dimension {dims} at byte {self.pos}")
        count = math.prod(dims)
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor`` (a shape over a layer's flat params): version 1, dims (N, K, R, C)."""
        self.expect_int(1, what="alias_tensor version")
        return (self.int(), self.int(), self.int(), self.int())
