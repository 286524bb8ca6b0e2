"""training/relevancy_counts.py: the (BP, RP) relevant-base count table that relevancy truncation draws from,
on real DR3 archive rows."""

from _paths import XP_DIR, load_script

from xpengine.train.train_data import load_truncate_counts

relevancy_counts = load_script("training/relevancy_counts.py", "relevancy_counts")


def test_counts_real_archive_rows_and_leaves_out_a_missing_band(tmp_path, capsys):
    # 3 real DR3 rows: BP/RP 53/40, 53/50, and 5405570973190252288 without BP (RP 47)
    src = XP_DIR / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    star = XP_DIR / "XP_CONTINUOUS-Gaia_DR3_5937083312263887616.ecsv"  # 22/12, another archive format
    out = tmp_path / "counts.csv"
    assert relevancy_counts.main([str(src), str(star), str(src), "--output", str(out)]) == 0
    assert "3 files, 7 rows, 2 left out for a missing band, 3 (BP, RP) pairs" in capsys.readouterr().out
    counts, weights = load_truncate_counts(str(out))
    assert dict(zip(map(tuple, counts.tolist()), weights.tolist(), strict=True)) == {
        (22, 12): 1.0,
        (53, 40): 2.0,
        (53, 50): 2.0,
    }
    head = out.read_text().splitlines()
    assert head[0].startswith("# python training/relevancy_counts.py") and head[2].startswith("bp_n_relevant")


def test_a_glob_that_matches_nothing_is_an_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        relevancy_counts.main([str(tmp_path / "none_*.csv.gz"), "--output", str(tmp_path / "c.csv")])
    assert "no file matches" in capsys.readouterr().err
