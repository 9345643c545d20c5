"""The segment bootstrap draws counts per cell; it must agree with a plain resampling bootstrap.

`hortus.checks._segments` draws, per replicate, multinomial counts per (label, score
level) cell instead of resampling every row (see `_cell_bootstrap`).  These tests
compare its replicates and intervals with a plain bootstrap written here from scratch
(rows drawn with replacement, the Mann-Whitney AUC of each resample) on small
seeded data.

Tolerances (B replicates per side, sigma the plain bootstrap's standard deviation):
the two are independent Monte Carlo estimates, so their difference has a standard
error of about sigma * sqrt(2 / B) for the mean, 1 / sqrt(B) relative for the standard
deviation, and 3.78 sigma / sqrt(B) for a 2.5% or 97.5% quantile (sqrt(2) x
sqrt(0.025 x 0.975 / B) / density at the quantile, which is 0.0584 / sigma for a normal
distribution).  Each check allows 4 standard errors: a right implementation fails
with probability about 6e-5 per check, and the seeds make each run the same.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from hortus.checks import _segments
from hortus.checks._segments import _boot_metric, _bootstrap
from hortus.checks.model_checks import segment_metrics_ci
from hortus.models.modeling import ModelSpec

B = 2000


def _data(n: int, seed: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels 0/1, scores in (0, 1)): continuous, or rounded to `decimals`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(x - 1)))).astype(np.int64)
    s = 1 / (1 + np.exp(-(0.8 * x + rng.normal(size=n))))
    return y, (s if decimals is None else np.round(s, decimals))


def _plain_auc_bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Return ROC AUC of `n_boot` resamples of the rows, one resample at a time.

    Rows are drawn with replacement; a resample's AUC is the Mann-Whitney statistic
    over its rows (a row drawn k times counts k times, ties count one half).
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    levels, inverse = np.unique(s, return_inverse=True)
    out = np.empty(n_boot)
    for b in range(n_boot):
        times = np.bincount(rng.integers(0, n, n), minlength=n)  # how often each row is drawn
        pos = np.bincount(inverse, weights=times * y, minlength=len(levels))
        neg = np.bincount(inverse, weights=times * (1 - y), minlength=len(levels))
        out[b] = (pos * (np.cumsum(neg) - neg + neg / 2)).sum() / (pos.sum() * neg.sum())
    return out


def _assert_agree(ours: np.ndarray, plain: np.ndarray) -> None:
    """Check mean, standard deviation and 2.5% / 97.5% quantiles within 4 standard errors."""
    sigma, n_a, n_b = plain.std(), len(ours), len(plain)
    assert abs(ours.mean() - plain.mean()) < 4 * sigma * np.sqrt(1 / n_a + 1 / n_b)
    assert abs(ours.std() / sigma - 1) < 4 * np.sqrt(1 / (2 * n_a) + 1 / (2 * n_b))
    q_se = np.sqrt(0.025 * 0.975) / 0.0584 * sigma * np.sqrt(1 / n_a + 1 / n_b)
    for q in (0.025, 0.975):
        assert abs(np.quantile(ours, q) - np.quantile(plain, q)) < 4 * q_se, q


@pytest.mark.parametrize("decimals", [None, 2], ids=["continuous", "rounded"])
def test_auc_replicates_agree_with_a_plain_row_bootstrap(decimals):
    """Check AUC replicates on 3,000 rows: 3,000 distinct scores (grouped in levels) or 100."""
    y, s = _data(3000, seed=11, decimals=decimals)
    ours = _bootstrap("roc_auc", y, s, B, np.random.default_rng(1))
    _assert_agree(ours, _plain_auc_bootstrap(y, s, B, seed=2))


def test_auc_with_coarse_levels_keeps_the_exact_estimate_and_agrees(monkeypatch):
    """Check that even 8 score levels give sklearn's AUC and replicates within tolerance."""
    y, s = _data(3000, seed=12)
    monkeypatch.setattr(_segments, "_LEVELS", 8)
    pos, neg, within = _segments._auc_levels(y, s, 8)
    assert len(pos) <= 8 and within is not None
    assert float(_segments._auc_from_counts(pos, neg, within)) == pytest.approx(
        roc_auc_score(y, s), abs=1e-12
    )
    ours = _bootstrap("roc_auc", y, s, B, np.random.default_rng(3))
    _assert_agree(ours, _plain_auc_bootstrap(y, s, B, seed=4))


def test_auc_levels_never_split_tied_scores():
    """Check that a score held by many rows stays one level (ties count one half)."""
    rng = np.random.default_rng(5)
    s = np.concatenate([np.full(500, 0.5), rng.uniform(size=1500)])
    y = (rng.uniform(size=2000) < s).astype(np.int64)
    pos, neg, within = _segments._auc_levels(y, s, 16)
    assert float(_segments._auc_from_counts(pos, neg, within)) == pytest.approx(
        roc_auc_score(y, s), abs=1e-12
    )
    level_rows = pos + neg
    assert (level_rows >= 500).sum() == 1  # the tied block is one level, not split


@pytest.mark.parametrize(
    ("metric", "multiclass"),
    [
        ("average_precision", False),
        ("log_loss", False),
        ("brier", False),
        ("accuracy", True),
        ("f1_macro", True),
    ],
)
def test_cell_bootstrap_of_other_metrics_agrees_with_row_resampling(metric, multiclass):
    """Check metrics drawn as counts per cell against resampled rows (`_boot_metric`)."""
    y, s = _data(2000, seed=21, decimals=1)
    if multiclass:  # three classes, predictions right about 60% of the time
        rng = np.random.default_rng(22)
        y = rng.integers(0, 3, 2000)
        s = np.where(rng.uniform(size=2000) < 0.6, y, rng.integers(0, 3, 2000))
    assert _segments._cell_bootstrap(metric, y, s, 2, np.random.default_rng(0)) is not None
    ours = _bootstrap(metric, y, s, B, np.random.default_rng(6))
    rng = np.random.default_rng(7)
    plain = _boot_metric(metric, y, s, rng.integers(0, len(y), size=(B, len(y))))
    _assert_agree(ours, plain)


def test_segment_intervals_agree_with_a_plain_bootstrap():
    """Check each segment's interval and estimate against a plain bootstrap of its rows."""
    y, s = _data(6000, seed=31)
    seg = np.where(np.arange(6000) % 3 == 0, "a", "b")  # 2,000 and 4,000 rows
    df = pl.DataFrame({"segment": seg, "y": y})
    spec = ModelSpec("y", ("x",), segments=("segment",))
    result = segment_metrics_ci(None, df, spec, scores=s, n_boot=B, seed=8, max_gap=1.0)
    assert result.passed
    for i, row in enumerate(result.table.iter_rows(named=True)):
        mask = seg == row["value"]
        assert row["estimate"] == pytest.approx(roc_auc_score(y[mask], s[mask]), abs=1e-12)
        plain = _plain_auc_bootstrap(y[mask], s[mask], B, seed=40 + i)
        q_se = np.sqrt(0.025 * 0.975) / 0.0584 * plain.std() * np.sqrt(2 / B)
        low, high = np.quantile(plain, [0.025, 0.975])
        assert abs(row["ci_low"] - low) < 4 * q_se
        assert abs(row["ci_high"] - high) < 4 * q_se


def _plain_paired_auc_bootstrap(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """Return AUC(a) - AUC(b) on `n_boot` resamples of the rows, both on the same rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    out = np.empty(n_boot)
    for r in range(n_boot):
        times = np.bincount(rng.integers(0, n, n), minlength=n)
        aucs = []
        for s in (a, b):
            levels, inverse = np.unique(s, return_inverse=True)
            pos = np.bincount(inverse, weights=times * y, minlength=len(levels))
            neg = np.bincount(inverse, weights=times * (1 - y), minlength=len(levels))
            aucs.append((pos * (np.cumsum(neg) - neg + neg / 2)).sum() / (pos.sum() * neg.sum()))
        out[r] = aucs[0] - aucs[1]
    return out


@pytest.mark.parametrize("levels", [None, 8], ids=["128 levels", "8 levels"])
def test_paired_auc_replicates_agree_with_a_plain_row_bootstrap(monkeypatch, levels):
    """Check the champion comparison's paired ROC AUC replicates, drawn as counts per
    (label, level of a, level of b) cell, against resampling the rows: 3,000 rows with
    3,000 distinct scores per model, correlated as a retrained model's are (the
    difference's spread is far below either AUC's, so pairing matters)."""
    from hortus.checks import _champion

    if levels is not None:
        monkeypatch.setattr(_champion, "_PAIR_LEVELS", levels)
    y, a = _data(3000, seed=21)
    b = 1 / (1 + np.exp(-(np.log(a / (1 - a)) + np.random.default_rng(5).normal(0, 0.5, 3000))))
    point_a, point_b, pair = _champion._pair("roc_auc", (0, 0), y, a, b)
    assert pair.cells is not None and len(pair.cells.counts) <= 2 * (levels or 128) ** 2
    assert point_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert point_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    # the cells hold the exact AUC of each model (levels' within-pairs from the rows)
    whole = pair.cells.auc(pair.cells.counts[None, :])[0]
    assert whole == pytest.approx(point_a - point_b, abs=1e-12)
    ours = _champion._paired_replicates((0, 0, B), [pair], 9)
    plain = _plain_paired_auc_bootstrap(y, a, b, B, seed=10)
    _assert_agree(ours, plain)
    # pairing: the difference varies far less than either model's AUC alone
    assert plain.std() < 0.5 * _plain_auc_bootstrap(y, a, 400, seed=11).std()
