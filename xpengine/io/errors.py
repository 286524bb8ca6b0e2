"""Exceptions raised by the Gaia readers and writers."""

from __future__ import annotations

__all__ = ["GaiaFileError", "one_line"]


class GaiaFileError(ValueError):
    """A whole file cannot be read: unknown format, empty, truncated, missing a required column, ...

    The message names the file and, where known, the data row (1-based, counting data rows after the
    header) and the column. The attributes repeat them for programs.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = source
        self.problem = problem
        self.row = row
        self.column = column
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        loc = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{source}{loc}: {problem}")


def one_line(problem: Exception | str) -> str:
    """A command line's error in one line: the message's lines joined by "; ", by a space after a heading
    that ends in ":" (every command's `<prog>: error: ...`)."""
    out = ""
    for part in (p.strip() for p in str(problem).splitlines()):
        if part:
            out += ("" if not out else " " if out.endswith(":") else "; ") + part
    return out
