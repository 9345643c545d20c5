"""`hortus init`: scaffold a new Hortus project from one table (CSV or Parquet).

`infer(source, ...)` reads the table and drafts everything a project needs:

- a draft data contract (`contracts.yaml`): per column its type (the same parsing
  silver applies, so a drafted type never quarantines a row of the source),
  nullability, observed range, allowed values of low-cardinality strings, the PII
  class the PII scanner (`hortus.checks.pii_scan`) and column names suggest, and the
  sensitive attributes to confirm;
- the roles of the columns: the target, the time column, identifiers (unique per row
  or named like `id` / `*_id`: never features), direct personal data (tokenised in
  silver, never features), sensitive attributes (judged by the fairness check, not
  features by default), segments (low-cardinality strings, sensitive ones included)
  and the features (everything else);
- the task when `--task` is absent: a numeric target with many values is
  regression, two classes binary, 3..20 multiclass.

`init_project(dest, draft)` writes the project into a temporary sibling folder and
renames it to `dest` only when every file is written and the project loads, so a
failure leaves nothing behind: the project definition `hortus.yaml`, `params.yaml`,
`dvc.yaml`, `access_policy.yaml`, the four notebooks, data and pipeline tests, a
Makefile, `pyproject.toml`, a README, `.gitignore`/`.dvcignore`, the landing copy of the
table under `data/` pinned by `data.dvc`, a git repository with DVC initialised.

Dependency on Hortus: Hortus is not on a package index, so the new project depends
on it by path (`[tool.uv.sources] hortus = {path = <this checkout>, editable = true}`):
the project follows the checkout it was made from.  To pin a Hortus build instead,
build a wheel in the checkout (`uv build`) and point the source at the wheel file.

Every mistake in the input (no header, empty file, unknown target or time column,
one-class target, unparseable time, an identifier chosen as a feature) raises
`InitError` with what to change, before anything is written.

The code lives in private modules by idea: `_draft` (thresholds, `InitError`, the
drafts), `_read` (the source table), `_infer` (`infer`), `_render` (the files of the
project, from `templates/init/`) and `_write` (`init_project`); every name is
re-exported here.
"""

from __future__ import annotations

from hortus.project._draft import (  # noqa: F401
    _EXTRA_DATES,
    _EXTRA_LAYOUTS,
    _ISO_LAYOUT,
    ADDRESS_RE,
    BIRTH_RE,
    DIRECT_KINDS,
    DIRECT_SHARE,
    ID_NAME_RE,
    MAX_ALLOWED,
    MAX_CLASSES,
    MIN_ROWS,
    NAME_COLUMN_RE,
    SCAN_ROWS,
    SENSITIVE_NAMES,
    TASKS,
    ColumnDraft,
    Draft,
    InitError,
    _describe,
    _plain,
)
from hortus.project._infer import (  # noqa: F401
    _need_column,
    _normalise_date,
    _normalise_datetime,
    _parse,
    _parses,
    _pii_findings,
    _suggest,
    infer,
    infer_task,
    infer_type,
)
from hortus.project._read import (  # noqa: F401
    _check_header,
    _looks_like_value,
    _read_csv,
    _read_parquet,
    _slug,
    read_source,
)
from hortus.project._render import (  # noqa: F401
    CONTRACT_HEADER,
    NOTEBOOKS,
    TEMPLATES,
    _fill,
    _flow,
    _metric,
    _source_bytes,
    files,
    hortus_checkout,
    render_contract,
    render_dvc,
    render_params,
    render_project,
)
from hortus.project._write import _check_loads, _git_identity, _run, init_project  # noqa: F401

__all__ = [
    "TASKS",
    "ColumnDraft",
    "Draft",
    "InitError",
    "files",
    "hortus_checkout",
    "infer",
    "infer_task",
    "infer_type",
    "init_project",
    "read_source",
    "render_contract",
    "render_dvc",
    "render_params",
    "render_project",
]
