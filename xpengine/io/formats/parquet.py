"""Apache Parquet (e.g. tables exported by users or by xpengine): array columns as `list` or
`fixed_size_list`, nulls as Parquet nulls. Read in row batches."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pyarrow as pa

from xpengine.io._source import Source
from xpengine.io.errors import GaiaFileError

NAME = "parquet"


def identify(src: Source) -> bool:
    """Parquet files start (and end) with the magic bytes `PAR1`."""
    return src.head.startswith(b"PAR1")


class ParquetReader:
    text_arrays = False

    def __init__(self, src: Source) -> None:
        import pyarrow.parquet as pq

        self.src = src
        self.format_name = NAME
        try:
            fobj = io.BytesIO(src.read_all()) if src.gzip else src.open()
            self._pf = pq.ParquetFile(fobj)
        except (pa.ArrowInvalid, OSError) as exc:
            src.close()
            raise GaiaFileError(src.url, f"cannot read Parquet: {exc}") from exc
        self.columns = list(self._pf.schema_arrow.names)
        raw = self._pf.schema_arrow.metadata or {}
        self.table_meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}

    def declared_type(self, name: str) -> pa.DataType | None:
        schema = self._pf.schema_arrow
        return schema.field(name).type if name in schema.names else None

    def field_metadata(self, name: str) -> dict[str, str]:
        field = self._pf.schema_arrow.field(name)
        return {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}

    def iter_batches(
        self, columns: list[str], types: dict[str, pa.DataType], batch_rows: int
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        row = 0
        try:
            for batch in self._pf.iter_batches(batch_size=batch_rows, columns=columns):
                yield row, batch
                row += batch.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise GaiaFileError(self.src.url, f"cannot read Parquet after data row {row}: {exc}") from exc
        finally:
            self.src.close()


def open_reader(src: Source) -> ParquetReader:
    return ParquetReader(src)
