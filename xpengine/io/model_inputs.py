"""Compact per-partition Parquet copy of what the model reads per source.

Reading the bulk text once costs ~50 µs per source (inflate + parse); this file is read back at
>1 M sources/s, so a partition is parsed once and then served many times (training epochs,
inference runs).

Layout (one row per source):
- `source_id` int64
- `bp_coefficients`, `bp_coefficient_errors`, `rp_coefficients`, `rp_coefficient_errors`:
  fixed_size_list<float32>[n] with n the band's number of coefficients (55 in DR3, from the data);
  a missing band (or a row with a read problem) is all NaN; a band has one count per file (rows or
  chunks of another count are refused, as `build_tokens` refuses them in an XP table).
- `bp_n_relevant_bases`, `rp_n_relevant_bases` int16 (0 for a missing band: it has no relevant bases;
  null for a present band without a count, e.g. a sampled spectrum: every coefficient is kept)
- `read_problem` string (null when the row is fine): the readers' row-level problems (XP and the
  joined gaia_source row), so that the READ_PROBLEM flag of a source survives the conversion.
- every other non-XP column of the input (gaia_source, 2MASS, E(B−V) columns), unchanged.
File metadata: `xpengine.model_inputs` (layout version), `xpengine.n_coefficients` (JSON) and, for
files written by `xpengine compact`, `xpengine.model_inputs.provenance` (JSON: the input files with
their URL, size and MD5, `model_inputs_provenance`).
Float32 is enough: coefficient relative errors are >1e-4, far above float32 resolution (6e-8).

Identification: `is_model_inputs` (a file named `ModelInputs_*`, or a Parquet file with the layout
metadata; a catalogue or training-set Parquet has neither); `iter_model_inputs` streams one in row
batches for the catalogue job, `read_model_inputs` reads one whole into numpy arrays.
Layout versions: 1 had no `read_problem` column (read as "no problem").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xpengine.io._arrays import list_column_to_numpy, source_id_array
from xpengine.io._source import OutputTarget
from xpengine.io.errors import GaiaFileError
from xpengine.io.filesystems import open_url, url_to_fs
from xpengine.io.schema import BANDS, DR3_N_COEFFICIENTS, META_SOURCE, XP_BY_NAME

__all__ = [
    "MODEL_INPUTS_PREFIX",
    "MODEL_INPUTS_VERSION",
    "ModelInputsWriter",
    "is_model_inputs",
    "iter_model_inputs",
    "model_inputs_provenance",
    "model_inputs_table",
    "read_model_inputs",
    "write_model_inputs",
]

MODEL_INPUTS_VERSION = "2"
MODEL_INPUTS_PREFIX = "ModelInputs_"
"""File-name prefix of a model-inputs partition: `ModelInputs_AAAAAA-BBBBBB.parquet` for the bulk
partition `XpContinuousMeanSpectrum_AAAAAA-BBBBBB.csv.gz` (the HEALPix range stays in the name)."""
_META_VERSION = b"xpengine.model_inputs"
_META_N = b"xpengine.n_coefficients"
_META_PROVENANCE = b"xpengine.model_inputs.provenance"
_ARRAYS = ("coefficients", "coefficient_errors")
_XP_ARRAY_COLUMNS = tuple(f"{b}_{k}" for b in BANDS for k in _ARRAYS)


def _array_type(width: int) -> pa.DataType:
    # Non-nullable lists of non-nullable floats (NaN marks missing): Parquet then stores no definition
    # levels for them and decodes ~30% faster.
    return pa.list_(pa.field("element", pa.float32(), nullable=False), width)


def _band_width(table: pa.Table, band: str) -> int:
    """The band's number of coefficients in `table`: its rows' length, else its `X_n_parameters`, else
    the one count the table's `xpengine.n_coefficients` metadata declares; 0 when nothing says (the
    band is missing from every row). Rows of different lengths raise ValueError, as `build_tokens`
    refuses them in an XP table."""
    col = table.column(f"{band}_coefficients")
    counts = sorted(v for v in pc.unique(pc.drop_null(pc.list_value_length(col))).to_pylist() if v)
    if len(counts) > 1:
        raise ValueError(
            f"{band}_coefficients has rows of {counts} coefficients; one band has one coefficient count "
            "per file (build_tokens refuses such an XP table too)"
        )
    if counts:
        return int(counts[0])
    if f"{band}_n_parameters" in table.column_names:
        width = pc.max(table.column(f"{band}_n_parameters")).as_py()
        if width:
            return int(width)
    try:
        declared = json.loads((table.schema.metadata or {}).get(_META_N, b"{}")).get(band)
    except (ValueError, AttributeError):
        return 0
    values = {int(v) for v in (declared if isinstance(declared, list) else [declared]) if v}
    return values.pop() if len(values) == 1 else 0


def _default_widths(found: dict[str, int]) -> dict[str, int]:
    """Widths of a whole file from its bands' counts: a band missing everywhere borrows the other's
    width (DR3's when both are); its arrays are all NaN, so the width carries no data."""
    return {b: found[b] or max(found.values()) or DR3_N_COEFFICIENTS for b in BANDS}


def model_inputs_table(table: pa.Table | pa.RecordBatch, widths: dict[str, int] | None = None) -> pa.Table:
    """Build the model-inputs table (see module docstring) from an XP table or record batch, joined
    or not.

    `widths` ({"bp": n, "rp": n}) fixes the array widths, so that the chunks of one partition share a
    schema; default: the table's own counts (`_band_width`; a band missing everywhere borrows the
    other's width). Raises ValueError for a band whose rows differ in length or, with `widths`, whose
    count differs from its fixed width (one band has one coefficient count per file: a DR4-like 51 is
    not padded to DR3's 55), and GaiaFileError for a `source_id` that is not integers.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    need = ["source_id", *_XP_ARRAY_COLUMNS]
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ValueError(f"table lacks columns {missing} needed for model inputs")
    found = {b: _band_width(table, b) for b in BANDS}
    if widths is None:
        widths = _default_widths(found)
    else:
        widths = {b: int(widths[b]) for b in BANDS}
        other = {b: found[b] for b in BANDS if found[b] and found[b] != widths[b]}
        if other:
            more = any(found[b] > widths[b] for b in other)
            raise ValueError(
                f"rows with {other} coefficients, {'more' if more else 'fewer'} than the {widths} of the "
                "partition's first rows; one band has one coefficient count per file"
            )
    source = (table.schema.metadata or {}).get(META_SOURCE, b"model inputs table").decode(errors="replace")
    cols: dict[str, pa.Array] = {
        "source_id": source_id_array(table.column("source_id"), source).combine_chunks()
    }
    n = table.num_rows
    mat_coef: dict[str, np.ndarray] = {}
    for b in BANDS:
        w = widths[b]
        for k in _ARRAYS:
            mat = list_column_to_numpy(table.column(f"{b}_{k}"), width=w, dtype=np.float32)  # (N, w)
            if k == "coefficients":
                mat_coef[b] = mat
            cols[f"{b}_{k}"] = pa.FixedSizeListArray.from_arrays(
                pa.array(mat.reshape(-1)), type=_array_type(w)
            )
        name = f"{b}_n_relevant_bases"
        # 0 for a missing band; a present band without a count (a sampled spectrum) stays null, "unknown:
        # every coefficient kept", as the readers give it (a 0 there once masked the whole band: session 16)
        present = np.isfinite(mat_coef[b]).any(axis=1)  # (N,)
        if name in table.column_names:
            raw = pc.cast(table.column(name), pa.int16()).combine_chunks()
            nrel = pc.if_else(pa.array(present), raw, pa.scalar(0, pa.int16()))
        else:
            nrel = pa.array(np.zeros(n, dtype=np.int16), mask=present)
        cols[name] = nrel
    for name in table.column_names:
        if name in XP_BY_NAME or name in cols:
            continue
        cols[name] = table.column(name).combine_chunks()  # read_problem, gaia_source, 2MASS, E(B-V)
    meta = {
        _META_VERSION: MODEL_INPUTS_VERSION.encode(),
        _META_N: json.dumps(widths).encode(),
    }
    fields = [
        pa.field(name, arr.type, nullable=not pa.types.is_fixed_size_list(arr.type) and name != "source_id")
        for name, arr in cols.items()
    ]
    return pa.table(cols, schema=pa.schema(fields, metadata=meta))


class ModelInputsWriter:
    """Write one model-inputs file chunk by chunk: one Parquet row group per `write` call, so that a
    partition is converted in bounded memory.

    The file is written under a temporary name and renamed onto `path` when the `with` block ends
    normally (removed when it raises); an existing `path` is refused unless `overwrite`
    (FileExistsError naming `hint`). All chunks share one schema and array widths: a band's width is
    its count in the first chunk that has the band (`_band_width`), so chunks are held back, unwritten,
    while a band is missing from every row so far (a band missing from the whole file borrows the
    other's width, as in `model_inputs_table`); a later chunk with another count is refused
    (ValueError), never NaN-padded. `rows` counts the rows accepted.
    `provenance` (JSON-able) is stored in the schema metadata as `xpengine.model_inputs.provenance`.

        with ModelInputsWriter("ModelInputs_000000-003111.parquet") as w:
            for chunk in joined_chunks:
                w.write(chunk)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        provenance: dict[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
        hint: str = "overwrite=True",
    ) -> None:
        self.target = OutputTarget(path, overwrite, storage_options, hint=hint)
        self.provenance: dict[str, Any] | None = provenance
        self.rows = 0
        self.widths: dict[str, int] | None = None
        self._known: dict[str, int] = {}  # band -> width, from the chunks seen before the widths are fixed
        self._held: list[pa.Table] = []  # chunks waiting for a band's width (missing from all so far)
        self._schema: pa.Schema | None = None
        self._writer: Any = None
        self._file: Any = None

    @property
    def url(self) -> str:
        return self.target.url

    def __enter__(self) -> ModelInputsWriter:
        self.target.__enter__()
        return self

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        """Append one chunk (an XP table, joined or not: see `model_inputs_table`) as a row group (held
        back while a band's width is undecided: see the class docstring)."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if self.widths is None:
            found = {b: _band_width(table, b) for b in BANDS}
            other = {b: w for b, w in found.items() if w and self._known.get(b, w) != w}
            if other:  # a band's width cannot change later: refused now, not when the file is fixed
                raise ValueError(
                    f"rows with {other} coefficients, other than the {self._known} of the partition's "
                    "first rows; one band has one coefficient count per file"
                )
            self._known.update({b: w for b, w in found.items() if w})
            if len(self._known) < len(BANDS):
                self._held.append(table)
                self.rows += table.num_rows
                return
            self._flush(dict(self._known))
        self._write_table(model_inputs_table(table, self.widths))
        self.rows += table.num_rows

    def _flush(self, widths: dict[str, int]) -> None:
        """Fix the widths and write the chunks held back."""
        self.widths = widths
        held, self._held = self._held, []
        for table in held:
            self._write_table(model_inputs_table(table, widths))

    def _write_table(self, out: pa.Table) -> None:
        if self._writer is None:
            if self.provenance is not None:
                meta = {
                    **out.schema.metadata,
                    _META_PROVENANCE: json.dumps(self.provenance, default=str).encode(),
                }
                out = out.replace_schema_metadata(meta)
            self._schema = out.schema
            self._file = self.target.fs.open(self.target.tmp, "wb")
            self._writer = pq.ParquetWriter(
                self._file,
                out.schema,
                compression="none",
                use_dictionary=False,
                write_statistics=["source_id"],
                data_page_size=16 << 20,  # few large pages: less per-page work when decoding
            )
        else:
            try:
                out = out.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise ValueError(
                    f"chunk columns {out.schema.names} of types {[str(t) for t in out.schema.types]} do not "
                    f"match the file's first chunk {self._schema.names}: {exc}"
                ) from exc
        self._writer.write_table(out, row_group_size=max(out.num_rows, 1))

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:  # the block failed: drop the partial file, keep the block's error
            try:
                self._close()
            except Exception:  # the original error matters more
                pass
            self.target.abort()
            return
        if self._writer is None and not self._held:
            self.target.abort()
            raise ValueError(f"{self.url}: no rows were written; a model-inputs file holds at least one row")
        try:
            if self._held:  # a band missing from the whole file: it borrows the other's width
                self._flush(_default_widths({**dict.fromkeys(BANDS, 0), **self._known}))
            self._close()
        except BaseException as exc:
            self.__exit__(type(exc))
            raise
        self.target.commit()


def write_model_inputs(
    table: pa.Table,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    provenance: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write the compact model-inputs Parquet file for one partition (see module docstring).

    Written uncompressed, one row group, large pages, no dictionary, arrays non-nullable: reading is
    then a near-straight copy of float32 pages (>1 M sources/s). Refuses to overwrite unless asked.
    """
    with ModelInputsWriter(
        path, overwrite=overwrite, provenance=provenance, storage_options=storage_options
    ) as w:
        w.write(table)


def _parquet_meta(url: str, storage_options: dict[str, Any] | None) -> dict[bytes, bytes] | None:
    """The Arrow schema metadata of a Parquet file (footer only), None when it is not Parquet."""
    with open_url(url, "rb", storage_options) as f:
        if f.read(4) != b"PAR1":
            return None
        f.seek(0)
        try:
            return pq.ParquetFile(f).schema_arrow.metadata or {}
        except (pa.ArrowInvalid, OSError):
            return None


def is_model_inputs(path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> bool:
    """True for a model-inputs file: named `ModelInputs_*` (whatever it holds: `iter_model_inputs`
    then says what is wrong with it), or a Parquet file with the `xpengine.model_inputs` metadata.

    A catalogue or training-set Parquet (other metadata), a bulk `.csv.gz` or any other Gaia table
    is not one. Reads the first bytes and, for Parquet, the footer only.
    """
    url = os.fspath(path)
    if os.path.basename(url.rstrip("/")).startswith(MODEL_INPUTS_PREFIX):
        return True
    try:
        meta = _parquet_meta(url, storage_options)
    except (OSError, ValueError):
        return False
    return meta is not None and _META_VERSION in meta


def _open_model_inputs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, Any]:
    """(ParquetFile, file object to close or None) of a model-inputs file; GaiaFileError otherwise."""
    from fsspec.implementations.local import LocalFileSystem

    fs, fpath = url_to_fs(url, storage_options)
    fobj = None
    try:
        if isinstance(fs, LocalFileSystem):
            pf = pq.ParquetFile(fpath, memory_map=True)
        else:
            fobj = fs.open(fpath, "rb")
            pf = pq.ParquetFile(fobj)
    except FileNotFoundError as exc:
        raise GaiaFileError(url, "file not found") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        if fobj is not None:
            fobj.close()
        raise GaiaFileError(url, f"cannot read Parquet (truncated or not Parquet?): {exc}") from exc
    meta = pf.schema_arrow.metadata or {}
    problem = None
    if _META_VERSION not in meta:
        problem = (
            f"not an xpengine model-inputs file (no {_META_VERSION.decode()} metadata; "
            "write one with `xpengine compact`)"
        )
    else:
        missing = [c for c in ("source_id", *_XP_ARRAY_COLUMNS) if c not in pf.schema_arrow.names]
        if missing:
            problem = f"model-inputs file lacks column(s) {missing}"
    if problem:
        if fobj is not None:
            fobj.close()
        raise GaiaFileError(url, problem)
    return pf, fobj


def model_inputs_provenance(
    path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The provenance a model-inputs file records (`xpengine compact`: inputs with URL, size, MD5;
    layout version; n_coefficients), read from the footer. GaiaFileError for another file."""
    url = os.fspath(path)
    pf, fobj = _open_model_inputs(url, storage_options)
    try:
        meta = pf.schema_arrow.metadata or {}
        out = json.loads(meta[_META_PROVENANCE]) if _META_PROVENANCE in meta else {}
        out["layout_version"] = meta[_META_VERSION].decode()
        out["n_coefficients"] = json.loads(meta.get(_META_N, b"{}"))
        out["rows"] = pf.metadata.num_rows
        return out
    finally:
        if fobj is not None:
            fobj.close()


def iter_model_inputs(
    path: str | os.PathLike[str],
    *,
    batch_rows: int = 16_384,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.Table]:
    """Stream a model-inputs file as Arrow tables of at most `batch_rows` rows, for the catalogue job.

    Each table holds the file's columns (see module docstring; `columns` selects, `source_id` always
    kept) and the schema metadata `xpengine.source` (the file) and `xpengine.n_coefficients`, as the
    XP reader's batches, so `xpengine.features.build_tokens` reads them as it reads a joined XP table:
    the arrays are `fixed_size_list<float32>` with NaN rows for a missing band; the non-XP columns are
    the gaia_source, 2MASS and E(B−V) columns the file was made with.

    Raises GaiaFileError (naming the file) for a file that cannot be read as Parquet, that is not a
    model-inputs file (a catalogue, a training set) or that lacks the XP array columns.
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    url = os.fspath(path)
    pf, fobj = _open_model_inputs(url, storage_options)
    meta = pf.schema_arrow.metadata or {}
    if columns is not None:
        unknown = [c for c in columns if c not in pf.schema_arrow.names]
        if unknown:
            raise GaiaFileError(url, f"no column(s) {unknown} in the model-inputs file")
        columns = list(dict.fromkeys(["source_id", *columns]))
    tags = {META_SOURCE: url.encode(), _META_N: meta.get(_META_N, b"{}"), _META_VERSION: meta[_META_VERSION]}
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns, use_threads=True):
            table = pa.Table.from_batches([batch])
            yield table.replace_schema_metadata(tags)
            row += batch.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise GaiaFileError(url, f"cannot read Parquet after data row {row}: {exc}") from exc
    finally:
        if fobj is not None:
            fobj.close()


def read_model_inputs(
    path: str | os.PathLike[str],
    *,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Read a model-inputs file into numpy arrays without per-row work.

    Returns {column: array}: `source_id` (N,) int64; array columns (N, n) float32 (NaN = missing);
    `*_n_relevant_bases` (N,) int16, or float64 with NaN where a present band has no count; other columns (N,)
    (nulls become NaN for numbers).
    """
    from fsspec.implementations.local import LocalFileSystem

    url = os.fspath(path)
    fs, fpath = url_to_fs(url, storage_options)
    # ParquetFile.read gives one chunk per column (pq.read_table splits them, which would force a
    # concatenating copy); a memory map spares the copy of the file into a read buffer.
    if isinstance(fs, LocalFileSystem):
        table = pq.ParquetFile(fpath, memory_map=True).read(columns=columns, use_threads=True)
    else:
        with fs.open(fpath, "rb") as f:
            table = pq.ParquetFile(f).read(columns=columns, use_threads=True)
    meta = table.schema.metadata or {}
    if _META_VERSION not in meta:
        raise GaiaFileError(url, f"not an xpengine model-inputs file (no {_META_VERSION.decode()} metadata)")
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        chunks = col.chunks
        if pa.types.is_fixed_size_list(col.type):
            w = col.type.list_size
            parts = [
                c.values.to_numpy(zero_copy_only=False)[c.offset * w : (c.offset + len(c)) * w].reshape(-1, w)
                for c in chunks
            ]
            out[name] = (
                parts[0]
                if len(parts) == 1
                else np.concatenate(parts)
                if parts
                else np.zeros((0, w), np.float32)
            )
        else:
            parts = [c.to_numpy(zero_copy_only=False) for c in chunks]
            out[name] = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else col.to_numpy()
    return out
