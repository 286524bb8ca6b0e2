"""Exceptions raised by the Gaia readers and writers."""

from __future__ import annotations

__all__ = ["GaiaFileError", "case_hint", "one_line"]


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


def case_hint(missing: list[str], present) -> str:
    """The end of a missing-column message where the file holds those columns in another case
    (`SOURCE_ID`: IDL's mwrfits, a FITS file from elsewhere): the archive's lower-case names are matched,
    so they must be renamed; "" otherwise."""
    by_lower = {c.lower(): c for c in present}
    near = [by_lower[m.lower()] for m in missing if m.lower() in by_lower]
    if not near:
        return ""
    return f"; the file has {near}: the columns are matched by the archive's lower-case names, rename them"
