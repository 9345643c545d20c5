"""The project definition: what one Hortus project consists of (`hortus.yaml`).

Hortus is a platform; a project is one application on it.  `hortus.yaml`, beside
`params.yaml` at the project root, declares:

- `contracts`: the data contracts of the landing sources and derived tables, a path
  relative to the project root or `package:resource` for contracts shipped in a
  Python package (the example domains);
- `features` (optional): a `FeatureSet` ("module:NAME") built by the `features`
  stage, the request sample of its skew check, and the column whose last value is
  the time the online store serves;
- `examples` (optional): the table of labelled training examples and the function
  that builds its spine (entity keys, time, label); features are joined as of the
  spine's time.  Without it, models train on their `table` directly;
- `kpis` (optional): a gold KPI table and the function that computes it;
- `models`: one or more models, each with its task (binary, multiclass, regression,
  ranking), table, target, features, time, group, segments, sensitive columns and
  identifiers, and how batch scoring picks what to score;
- `simulator` (optional): a module that can regenerate the landing snapshot.

A model may declare `outcomes` (optional): the label table its logged predictions
are joined with afterwards (keys of the logged request -> table columns, the event
time column, the condition that makes a row a positive outcome, an optional exposure
condition, the window in days and the k of realized precision); the `realized`
monitor (hortus.monitoring) turns that join into realized metrics.

Every stage, CLI command, monitor, notebook, report and the docs site reads it
through `Project.load`; the generic library never names a domain's tables, columns
or models.  A definition that names an unknown table, column, task or key is
refused when loaded (`Project.validate`), naming the key.

Examples
--------
>>> doc = {"name": "loans", "contracts": "contracts.yaml",
...        "models": {"default": {"task": "binary", "table": "silver.loans",
...                               "target": "approved", "features": ["income"]}}}
>>> p = Project.from_dict(doc, root=Path("/tmp/loans"))
>>> p.model().task, p.model().scoring.table
('binary', 'gold.predictions_default')
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hortus.errors import HortusError

if TYPE_CHECKING:
    from hortus.features.definitions import FeatureSet
    from hortus.lakehouse.catalog import Catalog

PROJECT_FILE = "hortus.yaml"
TASKS = ("binary", "multiclass", "regression", "ranking")
_TOP_KEYS = {"version", "name", "description", "contracts", "simulator", "features",
             "examples", "kpis", "models", "default_model", "trusted_model_types"}  # fmt: skip
_FEATURE_KEYS = {"set", "entities", "as_of"}
_EXAMPLE_KEYS = {"table", "build", "time"}
_KPI_KEYS = {"table", "build", "summary"}
_MODEL_KEYS = {"task", "table", "target", "features", "categorical", "time", "group",
               "segments", "sensitive", "ids", "exclude", "scoring", "description",
               "threshold", "outcomes"}  # fmt: skip
_OUTCOME_KEYS = {"table", "keys", "time", "positive", "exposed", "window_days", "k"}
_CONDITION_KEYS = {"column", "in"}
_SCORING_KEYS = {"table", "source", "select", "build", "serving", "summary", "candidates"}
_SELECT = ("all", "unlabelled", "latest")


class ProjectError(HortusError):
    """The project definition is missing or names something that does not exist."""


def _refuse_unknown(doc: Mapping, known: set[str], where: str) -> None:
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ProjectError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )


def resolve(ref: str, where: str) -> Any:
    """Import `module:attribute` (or a module) named in the project definition.

    Examples
    --------
    >>> resolve("hortus.errors:HortusError", "x").__name__
    'HortusError'
    """
    module, _, attr = str(ref).partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ProjectError(f"{where}: cannot import module {module!r} ({exc})") from None
    if not attr:
        return obj
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ProjectError(f"{where}: module {module!r} has no {attr!r}") from None
    return obj


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where}: expected a list of column names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class ScoringDef:
    """How batch scoring picks what to score and where the predictions go.

    `build` ("module:function") replaces the generic scorer (the plant shop ranks
    candidate pairs per user); without it the rows of `source` chosen by `select`
    (all, unlabelled = target is null, latest = the latest time stamp) are scored.
    `candidates` ("module:function", ranking models): fn(lh, at) -> the item keys the
    online service (`hortus serve`, /recommend) may rank at time `at`.
    """

    table: str
    source: str
    select: str = "all"
    build: str | None = None
    serving: str | None = None
    summary: str | None = None
    candidates: str | None = None


@dataclass(frozen=True)
class OutcomeCondition:
    """Rows of the outcome table where `column` is one of `values` (no values: true or > 0)."""

    column: str
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class OutcomesDef:
    """What happened after a prediction: the label table joined with logged predictions.

    `keys` pairs each key of a logged request (ops.prediction_log `request` JSON) with
    the outcome table's column; a logged prediction is positive when a row of `table`
    with the same keys meets `positive` within `window_days` after the prediction's
    `as_of` (the row's time is `time`).  `exposed` (optional) marks exposures (an
    impression), the denominator of the realized click-through rate; `k` limits
    realized precision to the top k of a logged list (None: every logged rank).
    """

    table: str
    keys: tuple[tuple[str, str], ...]
    time: str
    positive: OutcomeCondition
    exposed: OutcomeCondition | None = None
    window_days: float = 7.0
    k: int | None = None


@dataclass(frozen=True)
class ModelDef:
    """One model of the project: what it learns from which table, and how it is judged."""

    name: str
    task: str
    table: str
    target: str
    features: tuple[str, ...] | str
    categorical: tuple[str, ...] | str = "auto"
    time: str | None = None
    group: str | None = None
    segments: tuple[str, ...] = ()
    sensitive: tuple[str, ...] | str = "auto"
    ids: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    threshold: float = 0.5
    description: str = ""
    scoring: ScoringDef = field(default_factory=lambda: ScoringDef("", ""))
    outcomes: OutcomesDef | None = None

    @property
    def roles(self) -> tuple[str, ...]:
        """Return the columns that are not model input: target, time, group and ids."""
        return tuple(c for c in (self.target, self.time, self.group, *self.ids) if c)


@dataclass(frozen=True)
class FeaturesDef:
    """The project's feature set and how its online store and skew check are fed."""

    set: str
    entities: str | None = None
    as_of: str | None = None


@dataclass(frozen=True)
class ExamplesDef:
    """The labelled training examples: their table, spine builder and time column."""

    table: str
    build: str
    time: str


@dataclass(frozen=True)
class KpisDef:
    """An optional gold KPI table and the functions that compute and summarise it."""

    table: str
    build: str
    summary: str | None = None


@dataclass(frozen=True)
class Project:
    """A loaded project definition (see the module docstring)."""

    root: Path
    name: str
    contracts: str
    models: dict[str, ModelDef]
    default_model: str
    description: str = ""
    features: FeaturesDef | None = None
    examples: ExamplesDef | None = None
    kpis: KpisDef | None = None
    simulator: str | None = None
    source: str = PROJECT_FILE
    # extra types a model artifact may hold (hortus.models._trust, which reads it)
    trusted_model_types: tuple[str, ...] = ()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, root: Path | None = None) -> Project:
        """Load `hortus.yaml` of a project root (default: the project of the working dir).

        Without a `hortus.yaml` at `root`, the nearest one from the working directory
        up is used; without any, a ProjectError says how to make one.
        """
        from hortus.config import find_root

        candidates = [Path(root)] if root is not None else []
        candidates.append(find_root())
        for folder in candidates:
            path = folder.resolve() / PROJECT_FILE
            if path.exists():
                return _load_file(str(path), path.read_text(encoding="utf-8"))
        raise ProjectError(
            f"no {PROJECT_FILE} in {candidates[0]}: this is not a Hortus project; "
            "make one with `hortus init DIR --from FILE.csv`"
        )

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any], *, root: Path, source: str = PROJECT_FILE
    ) -> Project:
        """Build a project from the parsed YAML, refusing unknown keys and tasks."""
        if not isinstance(doc, Mapping):
            raise ProjectError(f"{source}: expected a mapping at the top level")
        _refuse_unknown(doc, _TOP_KEYS, source)
        for key in ("name", "contracts", "models"):
            if not doc.get(key):
                raise ProjectError(f"{source}: `{key}` is required")
        models_doc = doc["models"]
        if not isinstance(models_doc, Mapping):
            raise ProjectError(f"{source}: `models` must map model names to definitions")
        models = {str(n): _model(str(n), m, f"{source}: models.{n}") for n, m in models_doc.items()}
        trust = doc.get("trusted_model_types") or []
        if not isinstance(trust, list) or not all(isinstance(t, str) and t.strip() for t in trust):
            raise ProjectError(
                f"{source}: trusted_model_types must be a list of names (module.Class, "
                f"module.function or functools.partial(module.function)), got {trust!r}"
            )
        default = str(doc.get("default_model") or next(iter(models)))
        if default not in models:
            raise ProjectError(
                f"{source}: default_model {default!r} is not one of the models "
                f"({', '.join(models)})"
            )
        return cls(
            root=Path(root),
            name=str(doc["name"]),
            description=str(doc.get("description") or ""),
            contracts=str(doc["contracts"]),
            models=models,
            default_model=default,
            features=_section(doc, "features", _FEATURE_KEYS, FeaturesDef, ("set",), source),
            examples=_section(
                doc, "examples", _EXAMPLE_KEYS, ExamplesDef, ("table", "build", "time"), source
            ),  # fmt: skip
            kpis=_section(doc, "kpis", _KPI_KEYS, KpisDef, ("table", "build"), source),
            simulator=doc.get("simulator"),
            source=source,
            trusted_model_types=tuple(t.strip() for t in trust),
        )

    # ------------------------------------------------------------------ access
    @property
    def contracts_path(self) -> Path:
        """Return the contract file: a path under the root, or `package:resource`."""
        ref = self.contracts
        if ":" in ref and not Path(ref).is_absolute() and not (self.root / ref).exists():
            package, _, resource = ref.partition(":")
            try:
                return Path(str(importlib.resources.files(package).joinpath(resource)))
            except ModuleNotFoundError:
                raise ProjectError(
                    f"{self.source}: contracts {ref!r}: no package {package!r}"
                ) from None
        return (self.root / ref).resolve()

    def model(self, name: str | None = None) -> ModelDef:
        """Return one model definition (default: `default_model`), or a clear error."""
        name = name or self.default_model
        try:
            return self.models[name]
        except KeyError:
            raise ProjectError(
                f"no model {name!r} in {self.source}; models: {', '.join(self.models)}"
            ) from None

    def feature_set(self) -> FeatureSet | None:
        """Return the declared FeatureSet, or None when the project has no features."""
        if self.features is None:
            return None
        return resolve(self.features.set, f"{self.source}: features.set")

    def hook(self, ref: str | None, where: str) -> Callable | None:
        """Return the callable a definition key names ("module:function"), or None."""
        return None if ref is None else resolve(ref, f"{self.source}: {where}")

    def landing_time(self) -> tuple[str, str] | None:
        """Return (table, column) whose last value is "now" for the online store and scoring."""
        ref = self.features.as_of if self.features else None
        if ref is None:
            m = self.model()
            return (m.table, m.time) if m.time else None
        table, _, column = ref.rpartition(".")
        return table, column

    # ------------------------------------------------------------------ checks
    def validate(self, catalog: Catalog) -> None:
        """Refuse a definition that names a table or column the catalog does not have."""
        tables = set(catalog.names())

        def need_table(name: str, key: str) -> None:
            if name not in tables:
                raise ProjectError(
                    f"{self.source}: {key}: no table {name!r} in the catalog "
                    f"({self.contracts_path.name}); known: {', '.join(sorted(tables))}"
                )

        if self.examples:
            need_table(self.examples.table, "examples.table")
        if self.kpis:
            need_table(self.kpis.table, "kpis.table")
        for m in self.models.values():
            where = f"models.{m.name}"
            need_table(m.table, f"{where}.table")
            need_table(m.scoring.source, f"{where}.scoring.source")
            columns = set(catalog.get(m.table).column_names)
            named = {
                "target": (m.target,),
                "time": (m.time,) if m.time else (),
                "group": (m.group,) if m.group else (),
                "segments": m.segments,
                "ids": m.ids,
                "exclude": m.exclude,
                **({"features": m.features} if not isinstance(m.features, str) else {}),
                **({"categorical": m.categorical} if not isinstance(m.categorical, str) else {}),
                **({"sensitive": m.sensitive} if not isinstance(m.sensitive, str) else {}),
            }
            for key, cols in named.items():
                missing = [c for c in cols if c not in columns]
                if missing:
                    raise ProjectError(
                        f"{self.source}: {where}.{key}: no column {', '.join(map(repr, missing))} "
                        f"in {m.table}; its columns: {', '.join(sorted(columns))}"
                    )
            if m.outcomes is not None:
                o = m.outcomes
                need_table(o.table, f"{where}.outcomes.table")
                have = set(catalog.get(o.table).column_names)
                wanted = {"keys": [c for _, c in o.keys], "time": [o.time],
                          "positive": [o.positive.column],
                          "exposed": [o.exposed.column] if o.exposed else []}  # fmt: skip
                for key, cols in wanted.items():
                    missing = [c for c in cols if c not in have]
                    if missing:
                        raise ProjectError(
                            f"{self.source}: {where}.outcomes.{key}: no column "
                            f"{', '.join(map(repr, missing))} in {o.table}; its columns: "
                            f"{', '.join(sorted(have))}"
                        )


def _section(doc: Mapping, key: str, known: set[str], kind: type, required: tuple, source: str):
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ProjectError(f"{source}: `{key}` must be a mapping")
    _refuse_unknown(value, known, f"{source}: {key}")
    for r in required:
        if not value.get(r):
            raise ProjectError(f"{source}: {key}.{r} is required")
    return kind(**{k: (str(v) if v is not None else None) for k, v in value.items()})


def _condition(doc: Any, where: str) -> OutcomeCondition:
    if isinstance(doc, str) and doc:
        return OutcomeCondition(doc)
    if not isinstance(doc, Mapping) or not doc.get("column"):
        raise ProjectError(f"{where}: expected a column name or {{column, in: [values]}}")
    _refuse_unknown(doc, _CONDITION_KEYS, where)
    values = doc.get("in") or []
    if not isinstance(values, list):
        raise ProjectError(f"{where}.in: expected a list of values, got {values!r}")
    return OutcomeCondition(str(doc["column"]), tuple(values))


def _outcomes(doc: Any, where: str) -> OutcomesDef | None:
    """Parse a model's `outcomes` mapping (see `OutcomesDef`), refusing unknown keys."""
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ProjectError(f"{where}: expected a mapping")
    _refuse_unknown(doc, _OUTCOME_KEYS, where)
    for key in ("table", "keys", "time", "positive"):
        if not doc.get(key):
            raise ProjectError(f"{where}.{key} is required")
    keys = doc["keys"]
    if isinstance(keys, Mapping):
        pairs = tuple((str(a), str(b)) for a, b in keys.items())
    else:
        pairs = tuple((c, c) for c in _names(keys, f"{where}.keys"))
    try:
        window = float(doc.get("window_days", 7))
        k = None if doc.get("k") is None else int(doc["k"])
    except (TypeError, ValueError):
        raise ProjectError(f"{where}: window_days and k must be numbers") from None
    if window <= 0 or (k is not None and k < 1):
        raise ProjectError(f"{where}: window_days must be > 0 and k >= 1")
    exposed = doc.get("exposed")
    return OutcomesDef(
        table=str(doc["table"]), keys=pairs, time=str(doc["time"]),
        positive=_condition(doc["positive"], f"{where}.positive"),
        exposed=None if exposed is None else _condition(exposed, f"{where}.exposed"),
        window_days=window, k=k,
    )  # fmt: skip


def _model(name: str, doc: Any, where: str) -> ModelDef:
    if not isinstance(doc, Mapping):
        raise ProjectError(f"{where}: expected a mapping")
    _refuse_unknown(doc, _MODEL_KEYS, where)
    for key in ("task", "table", "target", "features"):
        if not doc.get(key):
            raise ProjectError(f"{where}.{key} is required")
    task = str(doc["task"])
    if task not in TASKS:
        raise ProjectError(f"{where}.task: unknown task {task!r}; one of {', '.join(TASKS)}")
    if task == "ranking" and not doc.get("group"):
        raise ProjectError(f"{where}.group is required for a ranking model (the list id)")
    table = str(doc["table"])
    scoring_doc = doc.get("scoring") or {}
    if not isinstance(scoring_doc, Mapping):
        raise ProjectError(f"{where}.scoring must be a mapping")
    _refuse_unknown(scoring_doc, _SCORING_KEYS, f"{where}.scoring")
    select = str(scoring_doc.get("select") or "all")
    if select not in _SELECT:
        raise ProjectError(f"{where}.scoring.select: {select!r} is not one of {', '.join(_SELECT)}")
    scoring = ScoringDef(
        table=str(scoring_doc.get("table") or f"gold.predictions_{name}"),
        source=str(scoring_doc.get("source") or table),
        select=select,
        build=scoring_doc.get("build"),
        serving=scoring_doc.get("serving"),
        summary=scoring_doc.get("summary"),
        candidates=scoring_doc.get("candidates"),
    )

    def cols(key: str, default: Any = ()) -> Any:
        value = doc.get(key, default)
        if isinstance(value, str) and value in ("all", "auto"):
            return value
        if isinstance(value, str) and ":" in value:
            return tuple(resolve(value, f"{where}.{key}"))
        return _names(value, f"{where}.{key}")

    return ModelDef(
        name=name,
        task=task,
        table=table,
        target=str(doc["target"]),
        features=cols("features"),
        categorical=cols("categorical", "auto"),
        time=doc.get("time"),
        group=doc.get("group"),
        segments=cols("segments"),
        sensitive=cols("sensitive", "auto"),
        ids=cols("ids"),
        exclude=cols("exclude"),
        threshold=float(doc.get("threshold", 0.5)),
        description=str(doc.get("description") or ""),
        scoring=scoring,
        outcomes=_outcomes(doc.get("outcomes"), f"{where}.outcomes"),
    )


@cache
def _load_file(path: str, text: str) -> Project:
    file = Path(path)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{file}: not valid YAML ({exc})") from None
    return Project.from_dict(doc, root=file.parent, source=str(file))


def resolve_features(model: ModelDef, catalog: Catalog, feature_set: FeatureSet | None):
    """Return (features, categorical, sensitive) of a model with `all`/`auto` worked out.

    `features: all` is every feature of the feature set when the model reads the
    examples table, else every column of its table that is not the target, time,
    group, an id, excluded, or ingestion metadata.  `categorical: auto` is the string
    and bool features; `sensitive: auto` the features the contract marks sensitive.
    """
    contract = catalog.get(model.table)
    if model.features == "all":
        fs_names = list(feature_set.feature_names) if feature_set is not None else []
        if fs_names and all(n in contract.column_names for n in fs_names):
            features = tuple(fs_names)
        else:
            skip = set(model.roles) | set(model.exclude)
            features = tuple(
                c.name for c in contract.columns
                if c.name not in skip and not c.name.startswith("_") and c.pii != "direct"
            )  # fmt: skip
    else:
        features = tuple(model.features)
    types = {c.name: c.type for c in contract.columns}
    categorical = (
        tuple(f for f in features if types.get(f) in ("string", "bool"))
        if model.categorical == "auto"
        else tuple(model.categorical)
    )
    sensitive = (
        tuple(c.name for c in contract.columns if c.sensitive and c.name in features)
        if model.sensitive == "auto"
        else tuple(model.sensitive)
    )
    return features, categorical, sensitive


#: train params that are not estimator hyper-parameters
_SPEC_PARAMS = ("estimator", "holdout_fraction", "k", "seed", "threshold", "threads", "models")
#: OpenMP threads of a fit when params.yaml `train` does not say (see ModelSpec.threads)
DEFAULT_TRAIN_THREADS = 2


def spec_for(project: Project, model: ModelDef, catalog: Catalog, train: Mapping[str, Any]):
    """Return the `ModelSpec` of a model from its definition and the `train` params.

    `train` is params.yaml's `train` section: estimator, holdout_fraction, k, seed,
    threads (pinned, 2 when not given: the model's bytes depend on it) and the
    estimator's hyper-parameters; `train.models.<name>` overrides them per model.

    Examples
    --------
    >>> # spec = spec_for(project, project.model(), lh.catalog, load_section(..., "train"))
    """
    from hortus.models.modeling import ModelSpec

    params = {k: v for k, v in train.items() if k != "models"}
    params |= dict((train.get("models") or {}).get(model.name) or {})
    features, categorical, _ = resolve_features(model, catalog, project.feature_set())
    hyper = {k: v for k, v in params.items() if k not in _SPEC_PARAMS}
    return ModelSpec(
        task=model.task,
        target=model.target,
        features=features,
        categorical=categorical,
        time=model.time,
        group=model.group,
        segments=model.segments,
        k=int(params.get("k", 5)),
        holdout_fraction=float(params.get("holdout_fraction", 0.2)),
        seed=int(params.get("seed", 0)),
        estimator=str(params.get("estimator", "hgb")),
        threshold=float(params.get("threshold", model.threshold)),
        threads=int(params.get("threads", DEFAULT_TRAIN_THREADS)),
        params=hyper,
    )


def predictions_contract(model: ModelDef, source):
    """Return the contract of a model's generic batch predictions table.

    One row per scored row of the scoring source: its primary key (or ids), the
    score, the predicted value or class, and the model version that scored it.
    """
    from hortus.lakehouse.contracts import Column, Contract

    keys = tuple(source.primary_key or ()) or model.ids
    key_cols = [source.column(k) for k in keys if k in source.column_names]
    layer, _, name = model.scoring.table.partition(".")
    ptype = "float" if model.task == "regression" else "string"
    return Contract(
        name=name,
        layer=layer,
        columns=(
            *key_cols,
            Column(
                "score",
                "float",
                True,
                description="Model score: probability of the "
                "positive or predicted class, or the predicted value (regression).",
            ),
            Column("prediction", ptype, True, description="Predicted class or value."),
            Column("model_name", "string", False, description="Registered model name."),
            Column("model_version", "int", False, min=1, description="Version that scored."),
            Column("as_of", "datetime", False, description="Scoring time (UTC)."),
            Column("batch_id", "string", False, description="Scoring batch id."),
        ),
        description=f"Batch predictions of model {model.name} ({model.task}) for "
        f"{source.full_name}.",
        owner="ml-engineers",
        primary_key=tuple(c.name for c in key_cols),
    )


def training_rows(lh, model: ModelDef):
    """Return the rows a model learns from: its table, without rows whose target is null."""
    import polars as pl

    return lh.read(model.table).filter(pl.col(model.target).is_not_null())
