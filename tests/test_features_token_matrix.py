"""The one (N, T) token container: every holder of token matrices is a TokenMatrix that adds only its
own fields, and subset/align keep the class and those fields."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xpengine.datasets.schema import TrainingArrays
from xpengine.evaluate.eval_set import EvalSet
from xpengine.evaluate.runner import align_to_vocabulary as runner_align
from xpengine.features import TokenMatrix, align_to_vocabulary
from xpengine.features.tokens import TokenBatch
from xpengine.features.vocabulary import PAPER_VOCABULARY
from xpengine.tasks.data import StarSet

VOCAB = PAPER_VOCABULARY


def _matrices(n: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(n, len(VOCAB))).astype(np.float32)
    values[0, 3] = np.nan
    errors = np.abs(rng.normal(size=(n, len(VOCAB)))).astype(np.float32)
    errors[0, 3] = 0.0
    return np.arange(10, 10 + n, dtype=np.int64), values, errors


def test_the_four_containers_are_token_matrices_with_only_their_own_fields() -> None:
    base = {f.name for f in dataclasses.fields(TokenMatrix)}
    assert base == {"source_id", "values", "errors", "vocabulary"}
    own = {
        TokenBatch: {"flags", "parameters", "g_mag"},
        TrainingArrays: {"split", "provenance"},
        StarSet: {"g_mag", "path"},
        EvalSet: {"path", "split", "g_mag", "truth", "truth_error"},
    }
    for cls, extra in own.items():
        assert issubclass(cls, TokenMatrix)
        assert {f.name for f in dataclasses.fields(cls)} - base == extra, cls.__name__
    assert runner_align is align_to_vocabulary  # the old import path still works


def test_subset_keeps_the_class_and_its_per_row_fields() -> None:
    sid, v, e = _matrices()
    idx = np.array([4, 1])
    tb = TokenBatch(source_id=sid, values=v, errors=e, vocabulary=VOCAB, flags=sid * 2, parameters={"a": 1})
    sub = tb.subset(idx)
    assert type(sub) is TokenBatch and sub.parameters == {"a": 1}
    np.testing.assert_array_equal(sub.flags, [28, 22])
    ta = TrainingArrays(sid, v, e, VOCAB, np.array(["train", "val", "test", "val", "train"]), {"p": 1})
    np.testing.assert_array_equal(ta.subset(idx).split, ["train", "val"])
    ss = StarSet(sid, v, e, VOCAB, np.arange(5.0), "f.parquet")
    s2 = ss.subset(idx)
    assert s2.path == "f.parquet"
    np.testing.assert_array_equal(s2.g_mag, [4.0, 1.0])
    es = EvalSet(
        source_id=sid,
        values=v,
        errors=e,
        vocabulary=VOCAB,
        path="p",
        split="test",
        g_mag=None,
        truth={"teff": np.arange(5.0)},
        truth_error={"teff": np.ones(5)},
    )
    e2 = es.subset(idx)
    assert e2.g_mag is None and e2.split == "test"
    np.testing.assert_array_equal(e2.truth["teff"], [4.0, 1.0])
    for sub in (tb.subset(idx), ta.subset(idx), s2, e2):
        np.testing.assert_array_equal(sub.source_id, [14, 11])
        np.testing.assert_array_equal(sub.values, v[idx])
        np.testing.assert_array_equal(sub.errors, e[idx])


def test_align_reorders_into_another_vocabulary() -> None:
    sid, v, e = _matrices()
    small = dataclasses.replace(VOCAB, name="small", tokens=VOCAB.tokens[-5:][::-1])
    tm = TokenMatrix(sid, v, e, VOCAB)
    a = tm.align(small)
    assert a.vocabulary is small and a.values.dtype == np.float32
    for name in small.names:
        np.testing.assert_array_equal(a.column(name), tm.column(name))
        np.testing.assert_array_equal(a.error(name), tm.error(name))
    back = a.align(VOCAB)  # tokens `small` lacks: NaN value, error 0
    assert np.isnan(back.values[:, 0]).all() and (back.errors[:, 0] == 0).all()
    ss = StarSet(sid, v, e, VOCAB, np.arange(5.0)).align(small)
    assert type(ss) is StarSet and ss.g_mag is not None


def test_column_helpers() -> None:
    sid, v, e = _matrices()
    tm = TokenMatrix(sid, v, e, VOCAB)
    assert len(tm) == 5
    assert tm.column("teff").dtype == np.float64
    assert np.isnan(tm.column("not_a_token")).all() and np.isnan(tm.error("not_a_token")).all()
    np.testing.assert_array_equal(tm.matrix(["teff", "nope"])[:, 0], tm.column("teff"))
    assert tm.matrix([]).shape == (5, 0)
    assert tm.xp().shape == (5, VOCAB.n_bp + VOCAB.n_rp)
    # TokenBatch keeps its own column: float32 (value, error) views, KeyError for an unknown token
    tb = TokenBatch(source_id=sid, values=v, errors=e, vocabulary=VOCAB, flags=np.zeros(5, np.int64))
    val, err = tb.column("teff")
    assert val.dtype == np.float32 and np.shares_memory(val, v) and np.shares_memory(err, e)
    with pytest.raises(KeyError):
        tb.column("not_a_token")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tm.values = v  # type: ignore[misc]
