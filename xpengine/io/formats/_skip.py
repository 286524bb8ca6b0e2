"""Blank out unwanted quoted array fields of a CSV stream before it reaches the CSV tokenizer.

In a bulk XP file the two correlation arrays are ~30 kB of the ~35 kB of a row. A CSV tokenizer must
walk every byte of them even when the column is not converted; here each quoted field is skipped with
two `bytes.find` calls (memchr), and the content of the unwanted ones is dropped, leaving `""` (an
empty, hence null, field) so every row keeps its column count. The tokenizer then sees ~10% of the
bytes. Rows that do not look as expected (a quote inside a field, an array not in brackets) are
passed through unchanged; only speed depends on the layout, never the result.

Valid for files whose quoted fields are all arrays of numbers (no quote characters inside), which the
caller checks from the header (the Gaia XP continuous tables).
"""

from __future__ import annotations

import io
from typing import IO

__all__ = ["FieldBlanker", "blank_fields"]

_CHUNK = 8 << 20


def blank_fields(
    buf: bytes | bytearray, drop: frozenset[int], final: bool, end: int | None = None, start: int = 0
) -> tuple[list[memoryview], int]:
    """Process the complete rows of `buf[start:end]`.

    Parameters
    ----------
    buf : CSV text (delimiter `,`, quote `"`), starting at the beginning of a row.
    drop : 0-based column indices whose quoted content is removed.
    final : the stream ends with `buf[:end]` (a last row without newline is complete).
    end : number of valid bytes in `buf` (default all).
    start : where the first row starts.

    Returns
    -------
    (pieces to concatenate, number of bytes of `buf` consumed). The unconsumed tail is an incomplete
    row to prepend to the next chunk.
    """
    out: list[memoryview] = []
    mv = memoryview(buf)
    find = buf.find
    count = buf.count
    n = len(buf) if end is None else end
    row_start = start
    while row_start < n:
        keep_from = row_start  # start of the not-yet-emitted part of this row
        pieces: list[memoryview] = []
        field = 0
        pos = row_start
        ok = True
        while True:
            q = find(b'"', pos, n)
            nl = find(b"\n", pos, q if q >= 0 else n)
            if nl >= 0 or q < 0:
                row_end = nl if nl >= 0 else -1
                break
            field += count(b",", pos, q)
            q2 = find(b'"', q + 1, n)
            if q2 < 0:  # quoted field runs past the chunk: incomplete row
                row_end = -1
                break
            if field in drop:
                if buf[q + 1] not in (0x5B, 0x28) or buf[q2 - 1] not in (0x5D, 0x29):
                    ok = False  # not "[...]" or "(...)": leave the row alone
                pieces.append(mv[keep_from : q + 1])
                keep_from = q2
            pos = q2 + 1
        if row_end < 0:
            if final and q < 0:  # last row of the stream, without a newline
                if not ok or not pieces:
                    out.append(mv[row_start:n])
                else:
                    out.extend(pieces)
                    out.append(mv[keep_from:n])
                return out, n
            return out, row_start
        if not ok or not pieces:
            out.append(mv[row_start : row_end + 1])
        else:
            out.extend(pieces)
            out.append(mv[keep_from : row_end + 1])
        row_start = row_end + 1
    return out, n


class FieldBlanker(io.RawIOBase):
    """Readable stream over `source` with the quoted content of columns `drop` removed."""

    def __init__(self, source: IO[bytes], drop: frozenset[int], chunk: int = _CHUNK) -> None:
        self._src = source
        self._drop = drop
        self._chunk = chunk
        self._tail = b""  # incomplete row carried to the next chunk
        self._ready: bytes = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._ready and not self._eof:
            data = self._src.read(self._chunk)
            out: list[memoryview] = []
            if not data:
                self._eof = True
                if self._tail:
                    pieces, used = blank_fields(self._tail, self._drop, final=True)
                    self._ready = b"".join(pieces) + self._tail[used:]
                    self._tail = b""
                return
            start = 0
            if self._tail:
                # The row cut by the previous chunk ends at the first newline (arrays hold none).
                nl = data.find(b"\n")
                if nl < 0:
                    self._tail += data
                    continue
                row = self._tail + data[: nl + 1]
                pieces, used = blank_fields(row, self._drop, final=False)
                out.extend(pieces)
                if used < len(row):  # malformed: pass the bytes through unchanged
                    out.append(memoryview(row)[used:])
                start = nl + 1
            pieces, used = blank_fields(data, self._drop, final=False, start=start)
            out.extend(pieces)
            self._tail = data[used:]
            self._ready = b"".join(out)

    def read(self, size: int = -1) -> bytes:
        # Fill up to `size` bytes: the CSV reader makes one block per read, and the blanked text
        # is ~10x shorter than the inflated chunks it comes from.
        want = size if size is not None and size >= 0 else 1 << 62
        parts: list[bytes] = []
        have = 0
        while have < want:
            self._fill()
            if not self._ready:
                break
            take = self._ready if len(self._ready) <= want - have else self._ready[: want - have]
            self._ready = self._ready[len(take) :]
            parts.append(take)
            have += len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._src.close()
        super().close()
