"""The correlation-skipping pre-filter of the bulk reader, checked against Python's csv module."""

from __future__ import annotations

import csv
import io

import pyarrow.compute as pc
import pytest
from _io_data import WITH_MISSING_ECSV, bulk_text, repeat_rows

from xpengine.io import read_xp_continuous, write_bulk_xp_continuous
from xpengine.io.formats._skip import FieldBlanker

DROP = frozenset({11, 23})


def _expected(text: str, drop: frozenset[int]) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    for r in rows:
        for k in drop:
            if k < len(r) and r[k].startswith(("[", "(")) and r[k].endswith(("]", ")")):
                r[k] = ""
    return rows


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> str:
    t = repeat_rows(read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True), 7)
    path = tmp_path_factory.mktemp("skip") / "x.csv.gz"
    write_bulk_xp_continuous(t, path)
    text = bulk_text(path)
    lines = text.splitlines(keepends=True)
    return "".join(ln for ln in lines if not ln.startswith("#")).split("\n", 1)[1]  # data rows only


@pytest.mark.parametrize("chunk", [997, 40_000, 1 << 20])
def test_blanker_matches_csv_module(body, chunk):
    out = FieldBlanker(io.BytesIO(body.encode()), DROP, chunk=chunk).read()
    assert len(out) < len(body) / 5  # the correlations were most of the text
    assert list(csv.reader(io.StringIO(out.decode()))) == _expected(body, DROP)


def test_blanker_edge_rows():
    text = (
        '1,"[1,2]","[3]"\n'  # normal
        '2,null,"[4,5]"\n'  # missing first array: the second quoted field is column 2
        '3,"[6]","bad"\n'  # not an array: row left alone
        '4,"[7]","[8,9]"'  # last row without newline
    )
    out = FieldBlanker(io.BytesIO(text.encode()), frozenset({2}), chunk=5).read().decode()
    assert out == '1,"[1,2]",""\n2,null,""\n3,"[6]","bad"\n4,"[7]",""'


def test_reader_with_and_without_skipping_agree(tmp_path, body):
    """Same rows through the fast path (no correlations) and the plain tokenizer (with them)."""
    t = repeat_rows(read_xp_continuous(WITH_MISSING_ECSV, with_correlations=True), 50)
    path = tmp_path / "y.csv.gz"
    write_bulk_xp_continuous(t, path)
    fast = read_xp_continuous(path)
    full = read_xp_continuous(path, with_correlations=True)
    for c in fast.column_names:
        assert fast.column(c).equals(full.column(c)), c
    assert (
        fast.column("bp_coefficients").null_count == pc.sum(pc.is_null(t.column("bp_coefficients"))).as_py()
    )
