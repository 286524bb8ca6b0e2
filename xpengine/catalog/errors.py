"""The catalogue query layer's errors (shared by `query` and `presets`, so neither imports the other)."""

from __future__ import annotations

__all__ = ["CatalogNotFoundError", "QueryError", "duckdb_message"]


class QueryError(ValueError):
    """A catalogue query that cannot run: bad SQL, unknown preset or parameter, unusable input."""


class CatalogNotFoundError(QueryError, FileNotFoundError):
    """The catalogue (or a table to join) is not where the caller said."""


def duckdb_message(exc: Exception) -> str:
    """DuckDB's message without its trailing blank lines."""
    return str(exc).strip()
