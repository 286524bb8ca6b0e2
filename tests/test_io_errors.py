"""Bad input: whole-file problems raise GaiaFileError naming file/row/column; row problems keep the row."""

from __future__ import annotations

import gzip
import re

import pyarrow as pa
import pytest
from _io_data import MISSING_BP, WITH_MISSING_ECSV, XP_DIR, bulk_text, repeat_rows, write_gz_text

from xpengine.io import GaiaFileError, read_gaia_source, read_xp_continuous, write_bulk_xp_continuous


@pytest.fixture(scope="module")
def real_xp() -> pa.Table:
    return read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True)


@pytest.fixture()
def bulk(tmp_path, real_xp):
    path = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    write_bulk_xp_continuous(real_xp, path)
    return path


def _data_lines(text: str) -> tuple[list[str], list[str]]:
    lines = text.splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    return lines[: k + 1], lines[k + 1 :]


def test_error_is_value_error():
    assert issubclass(GaiaFileError, ValueError)


def test_empty_file(tmp_path):
    p = tmp_path / "XpContinuousMeanSpectrum_000000-000001.csv.gz"
    p.write_bytes(b"")
    with pytest.raises(GaiaFileError, match=re.escape(str(p)) + ".*empty file"):
        read_xp_continuous(p)


def test_empty_gzip(tmp_path):
    p = tmp_path / "empty.csv.gz"
    p.write_bytes(gzip.compress(b""))
    with pytest.raises(GaiaFileError, match="empty file") as info:
        read_xp_continuous(p)
    assert info.value.source == str(p)


def test_unknown_format(tmp_path):
    p = tmp_path / "spectra.json"
    p.write_text('{"source_id": [1, 2]}')
    with pytest.raises(GaiaFileError, match=re.escape(str(p)) + ".*unknown format"):
        read_xp_continuous(p)
    p = tmp_path / "noise.bin"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GaiaFileError, match="unknown format"):
        read_gaia_source(p)


def test_truncated_gzip(tmp_path, real_xp):
    big = repeat_rows(real_xp, 90)
    full = tmp_path / "full.csv.gz"
    write_bulk_xp_continuous(big, full)
    data = full.read_bytes()
    cut = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(GaiaFileError, match=re.escape(str(cut)) + r".*truncated or corrupt gzip") as info:
        read_xp_continuous(cut)
    assert "after data row" in str(info.value)
    # cut inside the first 64 kB (while sniffing the format)
    cut.write_bytes(data[:2000])
    with pytest.raises(GaiaFileError, match="truncated or corrupt gzip"):
        read_xp_continuous(cut)


def test_corrupt_gzip(tmp_path, bulk):
    data = bytearray(bulk.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    bulk.write_bytes(bytes(data))
    with pytest.raises(GaiaFileError, match="truncated or corrupt gzip"):
        read_xp_continuous(bulk)


def test_malformed_array_keeps_row(tmp_path, bulk):
    header, rows = _data_lines(bulk_text(bulk))
    assert rows[0].count('"[') == 6
    rows[0] = rows[0].replace('"[', '"[oops', 1)  # first quoted array = bp_coefficients
    write_gz_text(bulk, "".join(header + rows))
    t = read_xp_continuous(bulk)
    assert t.num_rows == 3
    problem = t.column("read_problem")[0].as_py()
    assert problem.startswith("bp_coefficients: not a list of numbers")
    assert "data row 1" in problem
    assert t.column("bp_coefficients")[0].as_py() is None
    assert t.column("bp_n_relevant_bases")[0].as_py() is None  # the whole band is null
    assert len(t.column("rp_coefficients")[0].as_py()) == 55  # RP untouched
    assert t.column("read_problem").null_count == 2


def test_array_without_brackets(tmp_path, bulk):
    header, rows = _data_lines(bulk_text(bulk))
    i = next(k for k, r in enumerate(rows) if r.startswith(str(MISSING_BP)))
    # The RP errors lose their closing bracket: the inner part would still parse as numbers.
    start = rows[i].index('"[', rows[i].index('"[') + 2)
    end = rows[i].index(']"', start)
    rows[i] = rows[i][:end] + rows[i][end + 1 :]
    write_gz_text(bulk, "".join(header + rows))
    t = read_xp_continuous(bulk)
    assert t.column("read_problem")[i].as_py().startswith("rp_coefficient_errors: not enclosed in [] or ()")
    assert t.column("rp_coefficients")[i].as_py() is None


def test_wrong_length_array(tmp_path, bulk):
    header, rows = _data_lines(bulk_text(bulk))
    a = rows[2].index('"[') + 2
    b = rows[2].index(",", a)
    rows[2] = rows[2][:a] + rows[2][b + 1 :]  # drop the first BP coefficient
    write_gz_text(bulk, "".join(header + rows))
    t = read_xp_continuous(bulk)
    assert t.column("read_problem")[2].as_py() == "bp_coefficients: expected 55 values, got 54 (data row 3)"
    assert t.column("bp_coefficients")[2].as_py() is None
    assert t.column("rp_coefficients")[2].as_py() is not None
    assert t.column("read_problem")[0].as_py() is None


def test_wrong_length_correlations(tmp_path, real_xp):
    bad = real_xp.to_pylist()
    bad[0]["rp_coefficient_correlations"] = bad[0]["rp_coefficient_correlations"][:-1]
    path = tmp_path / "c.csv.gz"
    write_bulk_xp_continuous(pa.Table.from_pylist(bad, schema=real_xp.schema), path)
    t = read_xp_continuous(path, with_correlations=True)
    assert t.column("read_problem")[0].as_py() == (
        "rp_coefficient_correlations: expected 1485 values, got 1484 (data row 1)"
    )
    assert t.column("rp_coefficients")[0].as_py() is None
    # Not asked for: correlations are not even parsed, so the row is fine.
    assert read_xp_continuous(path).column("read_problem").null_count == 3


def test_missing_required_column(tmp_path):
    src = (XP_DIR / "XP_CONTINUOUS_RAW.csv").read_text().splitlines()
    names = src[0].split(",")
    drop = names.index("bp_coefficient_errors")
    import csv
    import io

    rows = list(csv.reader(io.StringIO("\n".join(src))))
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    for r in rows:
        w.writerow(r[:drop] + r[drop + 1 :])
    p = tmp_path / "XP_CONTINUOUS_no_errors.csv"
    p.write_text(out.getvalue())
    with pytest.raises(GaiaFileError, match=re.escape(str(p)) + r".*column 'bp_coefficient_errors'") as info:
        read_xp_continuous(p)
    assert info.value.column == "bp_coefficient_errors"
    # Correlations are required only when asked for.
    t = read_xp_continuous(XP_DIR / "18Sco-XP-spectra.csv")
    assert t.num_rows == 1


def test_missing_correlations_when_asked(tmp_path, real_xp):
    path = tmp_path / "nocorr.parquet"
    import pyarrow.parquet as pq

    pq.write_table(real_xp.drop_columns(["bp_coefficient_correlations", "rp_coefficient_correlations"]), path)
    assert read_xp_continuous(path).num_rows == 3
    with pytest.raises(GaiaFileError, match="bp_coefficient_correlations"):
        read_xp_continuous(path, with_correlations=True)


def _set_field(bulk, row: int, column: str, text: str) -> None:
    """Rewrite one field of one data row of a bulk file (csv-quoted as Gaia would)."""
    import csv
    import io

    header, rows = _data_lines(bulk_text(bulk))
    fields = next(csv.reader([rows[row]]))
    fields[header[-1].strip().split(",").index(column)] = text
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    rows[row] = out.getvalue()
    write_gz_text(bulk, "".join(header + rows))


def test_bad_band_count_is_a_row_problem(bulk, caplog):
    """A count the band depends on (n_parameters) that is not a number: that row's band is null."""
    _set_field(bulk, 0, "rp_n_parameters", "fifty-five")
    with caplog.at_level("WARNING", logger="xpengine.io.xp_continuous"):
        t = read_xp_continuous(bulk)
    assert t.num_rows == 3
    assert t.column("read_problem")[0].as_py() == (
        "rp_n_parameters: not a valid int16 value: 'fifty-five' (data row 1)"
    )
    assert t.column("rp_coefficients")[0].as_py() is None and t.column("rp_n_parameters")[0].as_py() is None
    assert len(t.column("bp_coefficients")[0].as_py()) == 55  # BP untouched
    assert t.column("read_problem").null_count == 2  # other rows fine
    assert str(bulk) in caplog.text and "rp_n_parameters" in caplog.text and "data row 1" in caplog.text


@pytest.mark.parametrize(
    "column", ["bp_chi_squared", "rp_standard_deviation", "solution_id", "bp_n_measurements"]
)
def test_bad_value_in_unused_column_is_a_row_problem(bulk, real_xp, caplog, column):
    """Issue C: a non-numeric value in a column the model does not use costs that value only."""
    _set_field(bulk, 2, column, "abc")
    with caplog.at_level("WARNING", logger="xpengine.io.xp_continuous"):
        t = read_xp_continuous(bulk)
    assert t.num_rows == 3
    dtype = t.schema.field(column).type
    assert t.column("read_problem")[2].as_py() == f"{column}: not a valid {dtype} value: 'abc' (data row 3)"
    assert t.column(column)[2].as_py() is None
    assert t.column("read_problem").null_count == 2
    # the rest of the row, the bands included, and the other rows are read as before
    ref = real_xp.drop_columns(["bp_coefficient_correlations", "rp_coefficient_correlations"])
    for name in ref.column_names:
        if name not in (column, "read_problem"):
            assert t.column(name).equals(ref.column(name)), name
    assert t.column(column)[:2].equals(ref.column(column)[:2])
    assert str(bulk) in caplog.text and column in caplog.text


def test_bad_source_id_fails_the_file(bulk):
    """A row that cannot be identified cannot be kept: whole-file error naming the column."""
    _set_field(bulk, 1, "source_id", "12x")
    with pytest.raises(GaiaFileError, match=re.escape(str(bulk)) + r" \(row 2, column 'source_id'\)") as info:
        read_xp_continuous(bulk)
    assert "12x" in str(info.value) and info.value.row == 2


def test_wrong_number_of_fields(tmp_path, bulk):
    header, rows = _data_lines(bulk_text(bulk))
    rows[1] = rows[1].split(",", 3)[0] + ",1,2\n"
    write_gz_text(bulk, "".join(header + rows))
    with pytest.raises(
        GaiaFileError,
        match=re.escape(str(bulk)) + r" \(row 2\).*cannot parse ecsv at line .*Expected 26 columns",
    ) as info:
        read_xp_continuous(bulk)
    assert info.value.row == 2 and f"at line {len(header) + 2} of the file" in str(info.value)


def test_a_short_row_deep_in_a_bulk_file_is_located(tmp_path, real_xp):
    """A row of the wrong length far beyond the first parsing block (pyarrow reads 8 MB blocks on threads
    and says only how many rows it had delivered): the error names its data row and line (until session 26
    it said "after data row N", N counting the blocks delivered before the failing one)."""
    path = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    write_bulk_xp_continuous(repeat_rows(real_xp, 700), path)  # ~40 kB a row with correlations: 3 blocks
    header, rows = _data_lines(bulk_text(path))
    rows[611] = rows[611].split(",", 3)[0] + ",1,2\n"
    write_gz_text(path, "".join(header + rows))
    for columns in (None, ["source_id", "bp_coefficients"]):
        with pytest.raises(GaiaFileError) as info:
            read_xp_continuous(path, columns=columns)
        assert info.value.row == 612, str(info.value)
        assert f"at line {len(header) + 612} of the file" in str(info.value)


def test_a_bad_source_id_deep_in_a_bulk_file_names_its_row(tmp_path, real_xp):
    """Review of session 32: a value that does not convert (an id of letters) beyond the first parsing
    block was reported "after data row 0"; the error names its data row and line, as a short row's does."""
    path = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    write_bulk_xp_continuous(repeat_rows(real_xp, 700), path)
    header, rows = _data_lines(bulk_text(path))
    rows[611] = "12345xx," + rows[611].split(",", 1)[1]
    write_gz_text(path, "".join(header + rows))
    with pytest.raises(GaiaFileError, match="column 'source_id'") as info:
        read_xp_continuous(path)
    assert info.value.row == 612, str(info.value)
    assert f"at line {len(header) + 612} of the file" in str(info.value) and "12345xx" in str(info.value)


def test_file_not_found(tmp_path):
    with pytest.raises(GaiaFileError, match="file not found"):
        read_xp_continuous(tmp_path / "nope.csv.gz")


def test_header_only_file_is_empty_table(tmp_path, bulk):
    header, _ = _data_lines(bulk_text(bulk))
    write_gz_text(bulk, "".join(header))
    t = read_xp_continuous(bulk)
    assert t.num_rows == 0
    assert t.schema.field("bp_coefficients").type == pa.list_(pa.float64())


def test_a_byte_order_mark_and_upper_case_names(tmp_path):
    """Review of session 32: Excel's "CSV UTF-8" starts with a byte-order mark, which made the first
    column `\\ufeffsource_id` and the file unreadable; upper-case names (IDL's mwrfits) are refused with
    the hint the gaia_source reader gives."""
    from _paths import XP_DIR

    raw = (XP_DIR / "XP_CONTINUOUS_RAW.csv").read_bytes()
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + raw)
    plain = read_xp_continuous(XP_DIR / "XP_CONTINUOUS_RAW.csv")
    assert read_xp_continuous(bom).column("source_id").equals(plain.column("source_id"))
    for name in ("XP_CONTINUOUS_RAW.ecsv",):  # before `# %ECSV` too (helper-91)
        ecsv = tmp_path / name
        ecsv.write_bytes(b"\xef\xbb\xbf" + (XP_DIR / name).read_bytes())
        assert read_xp_continuous(ecsv).column("source_id").equals(plain.column("source_id"))
    commented = tmp_path / "commented.csv"
    commented.write_bytes(b"\xef\xbb\xbf# written by a spreadsheet\n" + raw)
    assert read_xp_continuous(commented).column("source_id").equals(plain.column("source_id"))
    head, rest = raw.split(b"\n", 1)
    upper = tmp_path / "upper.csv"
    upper.write_bytes(head.upper() + b"\n" + rest)
    with pytest.raises(GaiaFileError, match=r"the file has \['SOURCE_ID'.*lower-case names, rename them"):
        read_xp_continuous(upper)


def test_a_value_with_a_quote_and_a_line_of_blanks_are_located(tmp_path):
    """helper-91: `123'45` cut the value at its quote, and a line of blanks (a one-field row to pyarrow,
    which skips only empty lines) was skipped while being looked for: neither was located."""
    from _paths import XP_DIR

    lines = (XP_DIR / "XP_CONTINUOUS_RAW.csv").read_text().split("\n")
    rows = [lines[0]] + [lines[1], lines[2]] * 300
    quoted = list(rows)
    quoted[401] = "123'45," + quoted[401].split(",", 1)[1]
    (tmp_path / "quoted.csv").write_text("\n".join(quoted) + "\n")
    with pytest.raises(GaiaFileError, match="at line 402 of the file") as info:
        read_xp_continuous(tmp_path / "quoted.csv")
    assert info.value.row == 401
    blanks = list(rows)
    blanks.insert(301, "   ")
    (tmp_path / "blanks.csv").write_text("\n".join(blanks) + "\n")
    with pytest.raises(GaiaFileError, match="at line 302 of the file") as info:
        read_xp_continuous(tmp_path / "blanks.csv")
    assert info.value.row == 301
