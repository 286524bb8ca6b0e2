"""Exceptions raised by the Gaia readers and writers."""

from __future__ import annotations

__all__ = ["GaiaFileError"]


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
