"""Buffered sequential reads of a file's metadata region, each checked against the file size and a
byte budget before a single byte is trusted or allocated."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import BinaryIO, NoReturn

from corral.errors import InvalidModelFile

CHUNK = 1 << 20

U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


class Stream:
    """Reads forward from offset 0; ``offset`` is also the number of metadata bytes consumed."""

    def __init__(self, file: BinaryIO, size: int, budget: int, fail: Callable[[str], InvalidModelFile]):
        self._file = file
        self.size = size
        self._budget = budget
        self.fail = fail
        self._buf = b""
        self._start = 0  # file offset of _buf[0]; the file position is always _start + len(_buf)
        self._pos = 0  # read position inside _buf

    @property
    def offset(self) -> int:
        return self._start + self._pos

    @property
    def remaining(self) -> int:
        return self.size - self.offset

    def error(self, message: str) -> NoReturn:
        raise self.fail(message)

    def _check(self, n: int, what: str) -> None:
        end = self.offset + n
        if end > self.size:
            self.error(
                f"{what} at offset {self.offset} needs {n} bytes but the file ends at {self.size}"
            )
        if end > self._budget:
            self.error(
                f"{what} at offset {self.offset} takes the metadata past the limit of {self._budget} bytes"
            )

    def _fill(self, n: int, what: str) -> None:
        """Make ``n`` bytes available at ``_pos``; the caller has checked them with ``_check``."""
        rest = self._buf[self._pos :]
        file_pos = self._start + len(self._buf)
        # Never buffer past the file size or the budget, so that bytes in the buffer need no check.
        want = min(max(n - len(rest), CHUNK), min(self.size, self._budget) - file_pos)
        data = self._file.read(want) if want > 0 else b""
        self._start += self._pos
        self._buf = rest + data
        self._pos = 0
        if len(self._buf) < n:  # the file shrank under us
            self.error(f"{what} at offset {self.offset}: unexpected end of file")

    def read(self, n: int, what: str) -> bytes:
        if self._pos + n > len(self._buf):
            self._check(n, what)
            self._fill(n, what)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        n = fmt.size
        if self._pos + n > len(self._buf):
            self._check(n, what)
            self._fill(n, what)
        values = fmt.unpack_from(self._buf, self._pos)
        self._pos += n
        return values

    def u32(self, what: str) -> int:
        return self.unpack(U32, what)[0]

    def u64(self, what: str) -> int:
        return self.unpack(U64, what)[0]

    def skip(self, n: int, what: str) -> None:
        if self._pos + n <= len(self._buf):
            self._pos += n
            return
        self._check(n, what)
        self._start = self.offset + n
        self._buf = b""
        self._pos = 0
        self._file.seek(self._start)

    def string(self, limit: int, what: str) -> bytes:
        """A GGUF string: u64 length, then that many bytes (no terminator)."""
        at = self.offset
        length = self.u64(f"{what} length")
        if length > limit:
            self.error(f"{what} length {length} at offset {at} exceeds the limit of {limit} bytes")
        return self.read(length, what)

    def strings(self, count: int, limit: int, keep: bool, what: str) -> list[str] | None:
        """``count`` GGUF strings (invalid UTF-8 replaced), or None when not ``keep``.

        The hot loop over vocabularies, hence the inlined buffer handling.
        """
        values: list[str] = []
        unpack = U64.unpack_from
        buf, pos = self._buf, self._pos
        for _ in range(count):
            if pos + 8 <= len(buf):
                (length,) = unpack(buf, pos)
                pos += 8
            else:
                self._pos = pos
                length = self.u64(what)
                buf, pos = self._buf, self._pos
            if length > limit:
                self._pos = pos - 8
                self.error(f"{what} length {length} at offset {self.offset} exceeds the limit of {limit} bytes")
            if pos + length <= len(buf):
                if keep:
                    values.append(buf[pos : pos + length].decode("utf-8", "replace"))
                pos += length
            else:
                self._pos = pos
                if keep:
                    values.append(self.read(length, what).decode("utf-8", "replace"))
                else:
                    self.skip(length, what)
                buf, pos = self._buf, self._pos
        self._pos = pos
        return values if keep else None
