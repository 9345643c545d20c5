"""Train, evaluate, save and score tabular models of four task types.

This layer knows nothing about any particular domain.  It takes a polars table,
a `ModelSpec` naming the task, the target, the feature columns (some of them
categorical), an optional time column (for the hold-out), an optional group
column (a ranked list such as a slate, for the @k metrics) and segment columns
(to report metrics by), and returns a fitted scikit-learn pipeline with its
evaluation.

Tasks (`TASKS`, `primary_metric`)
---------------------------------
============  ===================  ==============  =====================================
task          target               estimators      primary metric (direction)
============  ===================  ==============  =====================================
binary        0/1 or bool          hgb, logreg     roc_auc (higher is better)
ranking       0/1 or bool          hgb, logreg     ndcg_at_k (higher is better)
multiclass    string or int, >= 2  hgb, logreg     f1_macro (higher is better)
regression    int or float         hgb, linear     rmse (lower is better)
============  ===================  ==============  =====================================

A spec without a task (e.g. a registered spec written before tasks existed) is
"ranking" when it names a group and "binary" otherwise.  "hgb" is
HistGradientBoostingClassifier, or HistGradientBoostingRegressor for
regression; "logreg" is LogisticRegression (classification only); "linear" is
Ridge (regression only: L2-regularised least squares, stable with one-hot
encoded categoricals, `alpha` 1.0 unless the params say otherwise).

Metrics per task (`evaluate`, `TrainResult.metrics`; n is the row count):

* ranking: roc_auc, log_loss, average_precision, precision_at_k, recall_at_k,
  ndcg_at_k, groups, groups_with_positives, positives, base_rate, k;
* binary: roc_auc, log_loss, average_precision, and at the decision threshold
  `spec.threshold` (score >= threshold predicts 1): precision, recall, f1,
  accuracy; positives, base_rate, threshold.  No @k metrics;
* multiclass: accuracy, balanced_accuracy, f1_macro, log_loss, roc_auc_ovr
  (one-vs-rest ROC AUC, macro mean over the classes that have both outcomes),
  classes (number of classes of the model);
* regression: rmse, mae, r2, mean_target, mean_prediction.

Model output (`predict`, `score_frame`, `predict_scores`):

* binary and ranking: `score` = probability of class 1 (binary also gets
  `prediction` = 1 when score >= threshold, else 0);
* multiclass: `prediction` = the most probable class (ties: the first class in
  sorted order), `score` = its probability, and `proba_<class>` per class;
* regression: `prediction` = `score` = the predicted value.

`predict_scores` returns the `score` column as a 1-D array.  The learning curve
and permutation importance use ROC AUC for binary and ranking (columns
roc_auc, log_loss), f1_macro for multiclass (f1_macro, log_loss) and RMSE for
regression (rmse, mae; importance = the rise in RMSE when a feature is
permuted).

Design
------
- Input format: `to_model_input` turns the feature columns into a 2-D numpy
  *object* array in `spec.features` order: categoricals as Python `str` (null ->
  `nan`), everything else as float (null -> `nan`; bool -> 0/1, date -> days and
  datetime -> seconds since the epoch).  scikit-learn 1.9 accepts polars frames
  end to end, but it turns a null in a string column into `None`, which
  `OrdinalEncoder` treats as one more category rather than as missing; the object
  array makes every null a real `nan`, so missing values reach the estimator as
  missing.  No pandas anywhere.
- Pipeline: a `ColumnTransformer` selecting columns by position, then the
  estimator.  `hgb`: `OrdinalEncoder` (unknown and missing -> `nan`) for
  categoricals, numeric passthrough, `HistGradientBoostingClassifier` with
  native categorical support and `early_stopping=False` unless the params say
  otherwise.  `logreg`: one-hot encoding (unknown -> all zeros) for categoricals,
  median imputation and scaling for numerics, `LogisticRegression`.  The
  estimator always gets `random_state=spec.seed`.
- Hold-out: the last `holdout_fraction` of time (`time_split`); whole groups stay
  on one side.
- Ranking metrics (`ranking_metrics`), per group then averaged over the groups
  that hold at least one positive (a group without positives has no defined
  recall or NDCG, and counting it as zero precision would mix "no relevant item
  exists" with "the model missed it"):

  * rank = position by score descending; ties are broken pessimistically
    (negatives before positives), then by row order, so a constant score never
    looks better than chance;
  * precision@k = hits in the top k / min(k, group size) (a short list is not
    penalised for slots it does not have);
  * recall@k = hits in the top k / positives in the group;
  * NDCG@k = DCG@k / ideal DCG@k with gain = label and discount
    1 / log2(rank + 1), as `sklearn.metrics.ndcg_score`.

  Without a group column the whole frame is one ranked list.
- Artifacts: skops (never pickle).  `skops.io.dumps` is not byte-deterministic:
  its zip entries carry the current time and its entry names and `__id__` memo
  keys are `id()` of Python objects.  `save_model` rewrites the archive: memo
  ids renumbered 1, 2, ... in order of first appearance in `schema.json`, array
  files renamed in the same order, entries sorted, stored uncompressed (no zlib
  version dependence) with a fixed 1980-01-01 timestamp and fixed attributes;
  the result is checked to load with `skops.io.loads` before it is written.
  Loading (and registering) refuses an archive holding any type, function or
  partial outside `hortus.models._trust`'s reviewed list, before building it.
  The same fitted model therefore gives the same bytes and sha256.

Layout
------
This module is the public facade; the code lives in private modules of
`hortus.models`, one per idea (as `sklearn.metrics._ranking`), each importing
only those before it:

* `_spec`: `Task`, `TASKS`, `METRIC_DIRECTIONS`, `primary_metric`, `ModelSpec`;
* `_split`: `time_split` (the hold-out);
* `_estimators`: `build_pipeline`, `to_model_input`, `target_values`,
  `predict`, `predict_scores`, `class_probabilities`;
* `_metrics`: `ranking_metrics`, `evaluate`, `segment_metrics`;
* `_signature`: `Signature`;
* `_train`: `train`, `TrainResult` (learning curve, permutation importance);
* `_trust`: the types, functions and partials an artifact may hold (a reviewed
  list extended by hortus.yaml `trusted_model_types`);
* `_artifacts`: `save_model`, `load_model`, `score_frame`, `signature_path`.

Every name is re-exported here, private helpers included; patch a name in the
module that defines it (the code looks it up there), not here.
"""

from __future__ import annotations

# Every name the module had before the split, private helpers included (F401: the
# private ones are re-exported for importers, not listed in __all__).
from hortus.models._artifacts import (  # noqa: F401
    _ZIP_DATE,
    _normalise_skops,
    _sha256,
    _trusted_types,
    _write_atomic,
    load_model,
    save_model,
    score_frame,
    signature_path,
)
from hortus.models._estimators import (  # noqa: F401
    _DEFAULT_PARAMS,
    _check_params,
    _check_variety,
    _is_text,
    _labels,
    _numeric,
    _output_frame,
    _outputs,
    _positive_proba,
    _proba_column,
    build_pipeline,
    class_probabilities,
    predict,
    predict_scores,
    target_values,
    to_model_input,
)
from hortus.models._metrics import (  # noqa: F401
    _SEGMENT_SCHEMA,
    _TASK_SEGMENT_SCHEMA,
    _binary_metrics,
    _multiclass_metrics,
    _ratio,
    _regression_metrics,
    _score_metrics,
    _scored,
    evaluate,
    ranking_metrics,
    ranking_per_group,
    segment_metrics,
)
from hortus.models._signature import (  # noqa: F401
    Signature,
    _comparable,
    _compatible,
    _contract_bound,
    _json_value,
    _naive_utc,
    _type_name,
)
from hortus.models._spec import (  # noqa: F401
    _MAX_SHOWN,
    _RESERVED_PARAMS,
    ESTIMATORS,
    METRIC_DIRECTIONS,
    PREDICTION,
    PROBA_PREFIX,
    SCORE,
    TASKS,
    ModelSpec,
    Task,
    _shown,
    primary_metric,
)
from hortus.models._split import (  # noqa: F401
    _check_columns,
    _random_split,
    _training_order,
    time_split,
)
from hortus.models._train import (  # noqa: F401
    TrainResult,
    _auc,
    _curve_metrics,
    _empty_numeric_features,
    _importance,
    _learning_curve,
    _task_learning_curve,
    train,
)

__all__ = [
    "ESTIMATORS",
    "METRIC_DIRECTIONS",
    "ModelSpec",
    "PREDICTION",
    "PROBA_PREFIX",
    "SCORE",
    "Signature",
    "TASKS",
    "Task",
    "TrainResult",
    "build_pipeline",
    "class_probabilities",
    "evaluate",
    "load_model",
    "predict",
    "predict_scores",
    "primary_metric",
    "ranking_metrics",
    "ranking_per_group",
    "save_model",
    "score_frame",
    "segment_metrics",
    "signature_path",
    "target_values",
    "time_split",
    "to_model_input",
    "train",
]
