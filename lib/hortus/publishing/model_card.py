"""The model card of one registered model version, as data, with a governance checklist.

`build_card` assembles everything a model report shows about a version of any model
in the registry (`hortus.models.registry`), read as the acting user through the lakehouse:

- details: name, version, aliases, sha256, author, created, algorithm (the fitted
  estimator's class) and its parameters, the training spec, from the registry row;
- intended use, out-of-scope use, limitations and owners: `CardText`, given by the
  caller (the notebook takes it from params.yaml's `model_card.<model>` section);
- training data: every table the receipt says was read, at the Delta version read,
  with the content hash recorded at training and the hash of that version now (as this
  user sees it), and the data md5 (data.dvc) of the receipt;
- evaluation data: the hold-out, rebuilt by `hortus.models.modeling.time_split` from that
  snapshot with the registered spec (the rows the model was evaluated on);
- metrics: as registered for the version (what training measured), and recomputed on
  the rebuilt hold-out with the verified artifact; per segment with bootstrap
  intervals (`segment_metrics_ci`), fairness per sensitive attribute (`fairness`) and
  permutation importance (`importance_check`), with the thresholds of the promotion
  gate (`GateConfig`, params.yaml `gate`).  Every section follows the spec's task
  (`hortus.models.modeling.TASKS`): @k metrics only for ranking models, the task's segment
  metric, fairness as `hortus.checks.model_checks.task_fairness` judges it (top-k for
  ranking, the decision threshold for binary, one-vs-rest per class for multiclass,
  error and prediction ratios for regression), and the hold-out summary (positives
  and base rate, class counts, or the target's mean);
- gate results (`Registry.gates`), drift since training (`hortus.checks.gate.drift_check`:
  the training rows against the newest rows after the training cut-off), the
  reproducibility receipt and the approvals (`Registry.approvals`);
- the governance checklist (`CheckItem`), each item passing or failing with a
  sentence saying why, and the overall verdict (every item passed).

When the training snapshot cannot be read (the receipt names no table, the table or
version is gone, or the user may not read it), the card falls back to what the gate
recorded for the version and, when `reports/train/<model>/run.json` belongs to the same
artifact (same sha256), to the train stage's segment_metrics.csv and importance.csv;
each fallback is named in `ModelCard.notes`.  Nothing here is specific to a domain.

The code lives in private modules by idea: `_card_data` (the card, its text and
checklist items), `_card_facts` (registry row, training tables, train stage record),
`_card_evaluation` (the rebuilt hold-out), `_card_checklist` (the governance items)
and `_card_build` (`build_card`); every name is re-exported here.
"""

from __future__ import annotations

from hortus.checks.model_checks import _plain  # noqa: F401  (used by the card's summary)
from hortus.publishing._card_build import build_card
from hortus.publishing._card_checklist import (  # noqa: F401
    _check_documented,
    _check_fairness,
    _check_four_eyes,
    _check_from,
    _check_gate,
    _check_pii,
    _check_receipt,
    _check_training,
    _fmt,
)
from hortus.publishing._card_data import (
    CHECKLIST,
    RECEIPT_FIELDS,
    SCHEMA,
    CardText,
    CheckItem,
    ModelCard,
    settings_from_params,
)
from hortus.publishing._card_evaluation import (  # noqa: F401
    _drift,
    _evaluate,
    _Evaluation,
    _fairness,
    _sensitive,
    _time_range,
)
from hortus.publishing._card_facts import (  # noqa: F401
    _RANKING_KEYS,
    _algorithm,
    _approvals_table,
    _details,
    _from_train_dir,
    _gate_checks,
    _sig,
    _training_tables,
    spec_of,
    task_metrics,
)

__all__ = [
    "CHECKLIST",
    "RECEIPT_FIELDS",
    "SCHEMA",
    "CardText",
    "CheckItem",
    "ModelCard",
    "build_card",
    "settings_from_params",
    "spec_of",
    "task_metrics",
]
