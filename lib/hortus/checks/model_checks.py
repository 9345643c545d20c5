"""Model tests that a promotion gate runs on a trained model.

Every check takes a fitted pipeline (scored through `hortus.models.modeling`), a
frame of evaluation rows and the `ModelSpec`, and returns a `CheckResult`: its name,
whether it passed, the value and threshold of the criterion that decided it
(the first failed criterion, or the headline one when it passed), a detail
sentence naming every failed criterion with its own value and threshold, and
the supporting numbers (`table`, one row per segment/group/feature/test, and
`stats`, scalars).  Nothing here knows a domain: columns come from the spec
and the arguments.  Thresholds are explicit keyword arguments;
`ModelCheckConfig.from_dict` maps a params.yaml section onto them and
`run_model_checks` runs every check with it.

Task types
----------
Every check follows `spec.task` (`hortus.models.modeling.TASKS`).  The per-row model
output the checks judge (`model_outputs`) is the probability of class 1
(binary, ranking), the predicted class (multiclass) or the predicted value
(regression).  Per task:

============  ===================  ===========================================
task          segment metric       fairness (`task_fairness`)
============  ===================  ===========================================
ranking       roc_auc (default)    top `spec.k` of each list: selection rate,
                                   TPR, exposure (unchanged)
binary        roc_auc (default)    score >= `spec.threshold`: selection rate,
                                   TPR and FPR ratios (no top-k, no exposure)
multiclass    f1_macro, accuracy   one-vs-rest per class at the predicted
                                   class: selection rate, TPR, FPR ratios
regression    rmse, mae (lower is  MAE ratio and mean-prediction ratio across
              better)              groups (`fairness_regression`)
============  ===================  ===========================================

A setting that does not fit the task (a segment metric of another task, a
`top_k` for a binary model, a `threshold` for regression...) is replaced by
the task's default or dropped, and the check's detail says so; it never
crashes the gate.  Permutation importance uses the task's scorer (ROC AUC,
F1 macro, RMSE).  Behavioural tests judge the probability of class 1, the
predicted value (regression) or, for multiclass, the probability of the
class a directional test names (`class`); invariance compares every class
probability.

Checks
------
- `segment_metrics_ci`: a metric per value of each segment column (regions,
  countries, age bands...) with a percentile bootstrap confidence interval.
  All bootstrap index arrays of a segment are drawn at once; ROC AUC and
  average precision are computed from weighted counts per distinct score
  (a resample is a vector of row multiplicities), so a replicate costs no
  sort.  A segment fails when its interval lies entirely on the bad side of
  the overall metric by more than `max_gap` (significantly worse); segments
  below `min_segment_size` rows, or where the metric is undefined (one
  class), are `insufficient` and not judged.  For RMSE and MAE (regression)
  the gap is relative: worse means above overall x (1 + `max_gap`).
- `fairness`: per sensitive group, the selection rate (demographic parity),
  the true positive rate among positives (equal opportunity) and the mean
  exposure 1 / log2(1 + rank) within each ranked list; each as the largest
  difference and the smallest ratio across the groups large enough to judge.
  The default bound is the four-fifths rule (ratio >= 0.8).
- `importance_check`: permutation importance (ROC AUC drop on a seeded
  sample); fails when one feature holds more than `max_share` of the total
  positive importance (e.g. a feature that leaks the label), or when a
  sensitive attribute or a proxy of it ranks in the top `sensitive_rank`.
  A proxy is a feature whose association with a sensitive column reaches
  `proxy_threshold`: bias-corrected Cramér's V (category x category),
  adjusted correlation ratio (number x category; adjusted so that an
  ID-like category does not look associated with everything), |Spearman|
  (number x number).
- `schema_conflicts`: `Signature.check` as a check (missing columns, wrong
  types, nulls, unseen categories, out-of-range values, extra columns), and a
  confirmation that `Signature.validate` refuses the blocking ones with a
  `SignatureError` that lists each of them.
- `efficiency`: latency of single-row and batch scoring calls (p50/p99),
  throughput, traced peak memory of a batch call, artifact size (skops via
  `save_model`), and traced memory growth over repeated calls (a leak).
  Timing is reported, and judged only as a ratio to a baseline (the current
  champion's efficiency stats, measured in the same run), never absolutely.
- `behavioural`: invariance (a column such as an ID or token shuffled
  across rows must not change any score beyond `tolerance`) and directional
  expectations (adding `delta` to a numeric feature must move the mean score
  in the declared direction, with few rows moving the wrong way).

Memory is measured with `tracemalloc`, which sees Python objects and numpy
buffers (the model input, the estimator's arrays) but not memory that Rust
(polars) allocates itself.

Layout
------
The checks live in private modules, one per idea: `_result` (`CheckResult`),
`_inputs` (shared argument checks, `model_outputs`), `_segments`, `_fairness`,
`_importance`, `_schema`, `_efficiency`, `_behavioural` and `_runner`
(`ModelCheckConfig`, `run_model_checks`).  This module re-exports their names,
private helpers included; patch a name in the module that defines it.
"""

from __future__ import annotations

# names outside __all__ (private helpers, METRICS) are re-exported for the code that
# imports them from here (the gate, the model card)
from hortus.checks._behavioural import (
    _derangement,  # noqa: F401
    behavioural,
)
from hortus.checks._efficiency import (
    _DEFAULT_RATIOS,  # noqa: F401
    _rows,  # noqa: F401
    _traced,  # noqa: F401
    efficiency,
)
from hortus.checks._fairness import (
    fairness,
    fairness_multiclass,
    fairness_regression,
    task_fairness,
)
from hortus.checks._importance import (
    _association,  # noqa: F401
    _codes,  # noqa: F401
    _correlation_ratio,  # noqa: F401
    _cramers_v,  # noqa: F401
    _is_categorical,  # noqa: F401
    importance_check,
)
from hortus.checks._inputs import (
    _binary,  # noqa: F401
    _need_columns,  # noqa: F401
    _outputs_of,  # noqa: F401
    _positive_int,  # noqa: F401
    _scores_of,  # noqa: F401
    model_outputs,
)
from hortus.checks._result import (
    CheckResult,
    _decide,  # noqa: F401
    _fmt,  # noqa: F401
    _plain,  # noqa: F401
)
from hortus.checks._runner import (
    _SECTIONS,  # noqa: F401
    ModelCheckConfig,
    _keywords,  # noqa: F401
    run_model_checks,
)
from hortus.checks._schema import (
    _PROBLEM_KINDS,  # noqa: F401
    schema_conflicts,
)
from hortus.checks._segments import (
    _BOOT_CELLS,  # noqa: F401
    _EPS,  # noqa: F401
    _RELATIVE_GAP,  # noqa: F401
    METRICS,  # noqa: F401
    TASK_METRICS,  # noqa: F401
    _boot_metric,  # noqa: F401
    _bootstrap,  # noqa: F401
    _class_codes,  # noqa: F401
    _point,  # noqa: F401
    segment_metrics_ci,
)

__all__ = [
    "CheckResult",
    "ModelCheckConfig",
    "behavioural",
    "efficiency",
    "fairness",
    "fairness_multiclass",
    "fairness_regression",
    "importance_check",
    "model_outputs",
    "run_model_checks",
    "schema_conflicts",
    "segment_metrics_ci",
    "task_fairness",
]
