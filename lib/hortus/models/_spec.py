"""What to learn and how it is judged: the task table and the model spec.

`TASKS` maps each task type to its primary metric, estimators and the metrics of
the learning curve, permutation importance and segment checks; `ModelSpec`
validates a spec against it.  Re-exported by `hortus.models.modeling`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hortus.errors import HortusError

ESTIMATORS = ("hgb", "logreg", "linear")
SCORE = "score"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
_RESERVED_PARAMS = {
    "hgb": {"random_state", "categorical_features"},
    "logreg": {"random_state"},
    "linear": {"random_state"},
}


_MAX_SHOWN = 5


@dataclass(frozen=True)
class Task:
    """What a task type learns and how it is judged.

    Parameters
    ----------
    name
        "binary", "ranking", "multiclass" or "regression".
    primary_metric
        The headline metric of `evaluate` (the gate compares it with the
        champion's), and whether higher is better.
    estimators
        The `ModelSpec.estimator` values the task accepts.
    curve_metric
        The metric of the learning curve and of permutation importance.
    scoring
        The scikit-learn scorer of permutation importance (higher is better).
    segment_metric
        The default metric of `hortus.checks.model_checks.segment_metrics_ci`.
    """

    name: str
    primary_metric: str
    higher_is_better: bool
    estimators: tuple[str, ...]
    curve_metric: str
    scoring: str
    segment_metric: str

    @property
    def classifier(self) -> bool:
        """Return True for the tasks fitted by a classifier."""
        return self.name != "regression"


TASKS: dict[str, Task] = {
    "binary": Task("binary", "roc_auc", True, ("hgb", "logreg"), "roc_auc", "roc_auc", "roc_auc"),
    "ranking": Task(
        "ranking", "ndcg_at_k", True, ("hgb", "logreg"), "roc_auc", "roc_auc", "roc_auc"
    ),
    "multiclass": Task(
        "multiclass", "f1_macro", True, ("hgb", "logreg"), "f1_macro", "f1_macro", "f1_macro"
    ),
    "regression": Task(
        "regression",
        "rmse",
        False,
        ("hgb", "linear"),
        "rmse",
        "neg_root_mean_squared_error",
        "rmse",
    ),  # fmt: skip
}

# metric name -> True when higher is better (every metric `evaluate` reports)
METRIC_DIRECTIONS: dict[str, bool] = {
    "roc_auc": True,
    "average_precision": True,
    "log_loss": False,
    "precision_at_k": True,
    "recall_at_k": True,
    "ndcg_at_k": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "roc_auc_ovr": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}


def primary_metric(spec: ModelSpec | str) -> tuple[str, bool]:
    """Return (name, higher_is_better) of the primary metric of a spec or task name.

    Examples
    --------
    >>> primary_metric("regression")
    ('rmse', False)
    >>> primary_metric(ModelSpec("y", ("x",), group="g"))
    ('ndcg_at_k', True)
    """
    name = spec if isinstance(spec, str) else spec.task
    if name not in TASKS:
        raise HortusError(f"unknown task {name!r}; expected one of {tuple(TASKS)}")
    task = TASKS[name]
    return task.primary_metric, task.higher_is_better


@dataclass(frozen=True)
class ModelSpec:
    """What to learn from a table and how to evaluate it.

    Parameters
    ----------
    target
        Label column, no nulls: 0/1 or bool (binary, ranking), string or
        integer classes (multiclass), int or float (regression).
    features
        Model input columns, in input order.
    categorical
        The features to encode as categories (a subset of `features`).
    time
        Column for the time-based hold-out; None for a seeded random split.
    group
        Ranked-list id (e.g. a slate) for the @k metrics; None = one list.
    segments
        Columns to report hold-out metrics by.
    k
        Cut-off of the ranking metrics.
    holdout_fraction
        Share of rows (the latest ones) in the hold-out.
    seed
        Seed of every random choice (split without time, estimator, samples).
    estimator
        "hgb" (HistGradientBoosting, classifier or regressor by task), "logreg"
        (LogisticRegression, classification) or "linear" (Ridge, regression).
    params
        Estimator hyper-parameters, e.g. max_iter, learning_rate, max_leaf_nodes.
    task
        "binary", "ranking", "multiclass" or "regression" (see `TASKS`); when
        not given, "ranking" if `group` is set, else "binary" (so specs saved
        before tasks existed load unchanged).
    threshold
        Decision threshold of a binary model: score >= threshold predicts 1
        (precision/recall/F1 and fairness are measured there).
    threads
        OpenMP threads of every fit (`threadpoolctl` limit).  A multi-threaded
        HistGradientBoosting fit sums its histograms in an order that depends on the
        thread count, so the model's bytes do too; pinning it makes the same spec give
        the same bytes on any machine (and in a Ray worker).  None: the process's
        default (not reproducible across machines with different core counts).

    Examples
    --------
    >>> spec = ModelSpec(target="y", features=("a", "b"), categorical=("a",))
    >>> spec.estimator, spec.task
    ('hgb', 'binary')
    """

    target: str
    features: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    time: str | None = None
    group: str | None = None
    segments: tuple[str, ...] = ()
    k: int = 5
    holdout_fraction: float = 0.2
    seed: int = 0
    estimator: str = "hgb"
    params: dict = field(default_factory=dict)
    task: str | None = None
    threshold: float = 0.5
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.task is None:
            object.__setattr__(self, "task", "ranking" if self.group is not None else "binary")
        if self.task not in TASKS:
            raise HortusError(f"ModelSpec.task must be one of {tuple(TASKS)}, got {self.task!r}")
        for name in ("features", "categorical", "segments"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise HortusError(f"ModelSpec.{name} must be a sequence of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "params", dict(self.params))
        if not self.features:
            raise HortusError("ModelSpec.features is empty")
        dupes = sorted({f for f in self.features if self.features.count(f) > 1})
        if dupes:
            raise HortusError(f"ModelSpec.features lists {dupes} more than once")
        odd = [c for c in self.categorical if c not in self.features]
        if odd:
            raise HortusError(f"ModelSpec.categorical {odd} are not features")
        if self.target in self.features:
            raise HortusError(f"ModelSpec.target {self.target!r} is also a feature")
        roles = [self.target, self.time, self.group, *self.segments]
        if SCORE in roles:
            raise HortusError(f"a column named {SCORE!r} cannot be target/time/group/segment")
        if self.task != "ranking" and PREDICTION in roles:
            raise HortusError(
                f"a column named {PREDICTION!r} cannot be target/time/group/segment of a "
                f"{self.task} model (it is an output column)"
            )
        if self.estimator not in ESTIMATORS:
            raise HortusError(f"ModelSpec.estimator must be one of {ESTIMATORS}")
        allowed = TASKS[self.task].estimators
        if self.estimator not in allowed:
            hint = (
                "logreg is a classifier; use 'linear' (Ridge) or 'hgb' for regression"
                if self.estimator == "logreg"
                else "'linear' (Ridge) is a regressor; use 'logreg' or 'hgb' to classify"
            )
            raise HortusError(
                f"ModelSpec.estimator {self.estimator!r} does not fit task {self.task!r} "
                f"(it accepts {allowed}): {hint}"
            )
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not 0 < self.threshold < 1
        ):
            raise HortusError(f"ModelSpec.threshold must be in (0, 1), got {self.threshold!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise HortusError(f"ModelSpec.threads must be an integer >= 1, got {self.threads!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise HortusError(f"ModelSpec.k must be a positive integer, got {self.k!r}")
        if not 0 < self.holdout_fraction < 1:
            raise HortusError(
                f"ModelSpec.holdout_fraction must be in (0, 1), got {self.holdout_fraction}"
            )
        bad = sorted(set(self.params) & _RESERVED_PARAMS[self.estimator])
        if bad:
            raise HortusError(f"ModelSpec.params may not set {bad}: they come from the spec")

    def to_dict(self) -> dict:
        """Return the spec as a JSON-friendly dict (for run metadata)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def _shown(values: list[Any]) -> str:
    more = f" and {len(values) - _MAX_SHOWN} more" if len(values) > _MAX_SHOWN else ""
    return f"{values[:_MAX_SHOWN]}{more}"
