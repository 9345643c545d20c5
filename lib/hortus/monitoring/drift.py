"""Drift between a reference and a current table, per column, segment and time window.

Shared by the monitors and the promotion gates: features, predictions and the target
are all just columns.  The reference is summarised once into a `Profile` (storable as
JSON), and each new batch is compared against it without rescanning the reference.

Statistics
----------
Numeric columns (integers, floats, decimals):

- ``ks``: two-sample Kolmogorov-Smirnov statistic D with its asymptotic p-value
  (the same formula as ``scipy.stats.ks_2samp(..., method="asymp")``).
- ``wasserstein``: the Wasserstein-1 (earth mover's) distance divided by the
  reference standard deviation (population std, ddof=0), as Evidently's
  "Wasserstein distance (normed)".  A constant reference (std 0) is divided by
  ``|mean|`` instead, or by 1 when the mean is 0 too.
- ``psi``: population stability index over reference *quantile* bins: the inner
  edges are the reference quantiles at 1/B, ..., (B-1)/B (B = ``psi_bins``, linear
  interpolation, duplicate edges dropped) and the two outer bins are open, so values
  beyond the reference range land in the first or last bin.  Shares are floored at
  ``psi_epsilon``.  Caveat (measured): quantile bins nearly miss a thin far tail, e.g.
  10% of the current moved far above the reference maximum gives PSI of about 0.07;
  ``out_of_range_share`` (the current share outside [reference min, max]) and the
  Wasserstein distance show such tails.
- ``jensen_shannon``: Jensen-Shannon *distance* (square root of the divergence,
  base 2, in [0, 1]) between the shares of the same quantile bins.

All sort-based statistics come from one sort per column and side (a stored exact
profile keeps its side sorted).  KS and Wasserstein are exact without a point-by-point
merge: the larger side is cut into bins, the other split at the same values, and only
the bins where the two distribution functions cross are merged point by point
(`hortus.monitoring._drift_stats._merge_stats`; about 2% of the points).

Exact by default
----------------
A reference *frame* is kept exactly (every distinct value with its count) up to
``exact_max_rows`` non-null values per column (default 5,000,000), so KS and
Wasserstein equal ``scipy.stats.ks_2samp`` / ``wasserstein_distance`` to rounding
(measured: 0 to 1e-16 at 20,000 rows, ties included) and the KS p-value is scipy's
``method="asymp"``, which is also what ``ks_2samp``'s default ``method="auto"`` uses
once either sample exceeds 10,000 rows.  A stored `Profile` (and a reference above
``exact_max_rows``) keeps a quantile sketch of ``profile_points`` points: each result
then says ``exact: false`` with ``ks_error_bound`` (the largest sketch weight share:
the sketched KS is within it of the exact KS) and ``wasserstein_error_bound``.

Columns left out
----------------
Unless named in ``columns``: ingestion metadata (names starting with ``_``, such as
``_source_file``, ``_line``, ``_ingested_at``), declared identifiers (``ids``: a
contract's primary key, a model's ids), names such as ``id``, ``*_id``, ``uuid``, and
columns whose values are unique per row (strings; integers that are also dense, like
a row counter).  ``DriftReport.skipped_columns()`` lists them with the reason.

Categorical columns (strings, categoricals, enums, booleans, and integer columns with
at most ``categorical_max_unique_numeric`` distinct reference values such as a 0/1
target or a 1-5 rating):

- ``chi2``: chi-square test of homogeneity on the 2 x K contingency table
  (reference counts and current counts over the union of categories, K-1 degrees of
  freedom, no continuity correction), not current counts against reference shares
  taken as exact (which overstates the evidence and gives false positives).
- ``psi`` and ``jensen_shannon`` over the category shares.
- new categories (in the current only) and missing ones (in the reference only) are
  listed.

Nulls (and NaN / +-inf in numeric columns) are left out of the distributions and
reported as a null-share change per column; a change larger than
``null_share_threshold`` sets ``null_drifted``.

Gating
------
The statistic that decides ``drifted`` is chosen per column (``statistic="auto"``),
like Evidently: when the smaller of the two non-null sample sizes is at most
``small_sample_rows`` (default 1,000) a p-value test (``ks`` / ``chi2``, drifted when
the corrected p-value is below ``alpha``); above it a distance (normalised
``wasserstein`` / ``jensen_shannon``, drifted when the value is at least its
threshold), because with large samples p-value tests flag chance differences.
``DriftConfig.stattest`` overrides the choice per column, ``DriftConfig.thresholds``
the threshold.

Calibrated thresholds
---------------------
``calibrated_compare(history, current, columns, time=...)`` compares the current with
the history's last week (or the current's length when longer), each column against a
threshold from a null fitted to the history's like-window pairs (a trend growing with
the lag plus chance shrinking with the rows, widened by the pairs' own misfit);
features that move by construction (windows still filling up, all-time totals) get
the room their normal movement needs, stationary ones stay tight.  With
``increments=`` (window aggregates -> entity keys, `increments_for(project, features)`)
those are also judged on what the recent days added: their per-entity change per day
(`with_increments`), which a 30-day or all-time level dilutes.  See
`hortus.monitoring._drift_calibration`.  The gate, the monitors and the dashboard use it.

Multiple testing: the p-values of every p-value-gated result of one `compare` call
(all columns x segments x windows) form one family and are adjusted by
Benjamini-Hochberg (``correction="bh"``, controls the false discovery rate at
``alpha``; the default), Bonferroni (``"bonferroni"``, family-wise error rate) or not
at all (``"none"``).  Distance-gated results are not adjusted.

Examples
--------
>>> import polars as pl
>>> ref = pl.DataFrame({"price": [float(i) for i in range(500)]})
>>> cur = ref.with_columns(pl.col("price") + 100.0)
>>> report = compare(ref, cur)
>>> report.drifted, report.results[0].statistic
(True, 'ks')
>>> stored = Profile.from_dict(Profile.from_frame(ref).to_dict())
>>> compare(stored, cur).results[0].value == report.results[0].value
True
"""

from __future__ import annotations

from hortus.monitoring._drift_calibration import (  # noqa: F401
    Calibration,
    CalibrationConfig,
    calibrate,
    calibrated_compare,
)
from hortus.monitoring._drift_compare import (  # noqa: F401
    FRAME_STATS,
    ColumnDrift,
    DriftReport,
    _bin_labels,
    _categorical_compare,
    _compare_column,
    _correct,
    _current_expr,
    _finite,
    _numeric_compare,
    _segment_groups,
    _window_starts,
    compare,
)
from hortus.monitoring._drift_config import (  # noqa: F401
    _WINDOW_RE,
    CATEGORICAL_STATISTICS,
    CORRECTIONS,
    HISTOGRAM_MAX_CATEGORIES,
    ID_MIN_ROWS,
    MAX_LISTED_CATEGORIES,
    MERGE_BLOCK,
    NULL_SEGMENT,
    NUMERIC_STATISTICS,
    P_VALUE_TESTS,
    PARALLEL_MIN_ROWS,
    PROFILE_FORMAT,
    SCAN_BATCH_COLUMNS,
    DriftConfig,
    DriftError,
    default_skip_reason,
)
from hortus.monitoring._drift_increments import (  # noqa: F401
    increment_name,
    increments_for,
    with_increments,
)
from hortus.monitoring._drift_profile import (  # noqa: F401
    ColumnProfile,
    Profile,
    _categorical_profile,
    _category_expr,
    _collect,
    _column_batches,
    _dense_unique,
    _distinct,
    _id_like,
    _kind_of,
    _numeric_expr,
    _numeric_profile,
    _parallel_map,
    _partition,
    _pick_columns,
    _profile_column,
    _profile_columns,
    _schema,
    _settings,
    _skip_reason,
    _sorted_finite,
    _sorted_quantiles,
    _value_counts,
)
from hortus.monitoring._drift_stats import (  # noqa: F401
    _bin_counts,
    _chi2_sf,
    _js_distance,
    _kolmogorov_sf,
    _ks_pvalue,
    _merge_stats,
    _psi,
    _scale,
    _support,
    adjust_p_values,
)

__all__ = [
    "CATEGORICAL_STATISTICS",
    "Calibration",
    "CalibrationConfig",
    "CORRECTIONS",
    "ColumnDrift",
    "ColumnProfile",
    "DriftConfig",
    "DriftError",
    "DriftReport",
    "FRAME_STATS",
    "HISTOGRAM_MAX_CATEGORIES",
    "MAX_LISTED_CATEGORIES",
    "MERGE_BLOCK",
    "NULL_SEGMENT",
    "NUMERIC_STATISTICS",
    "PARALLEL_MIN_ROWS",
    "PROFILE_FORMAT",
    "P_VALUE_TESTS",
    "Profile",
    "SCAN_BATCH_COLUMNS",
    "adjust_p_values",
    "calibrate",
    "calibrated_compare",
    "increment_name",
    "increments_for",
    "with_increments",
    "compare",
    "default_skip_reason",
]
