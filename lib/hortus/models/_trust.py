"""Which types a model artifact may hold: a reviewed list, extended by the project.

A skops archive names every object it rebuilds (class instances, type references,
functions, partials).  skops itself trusts every scikit-learn estimator, numpy
ufuncs and more by default, and the earlier rule here trusted any ``sklearn.*`` or
``numpy.*`` name plus any ``functools.partial``: a crafted pipeline holding
``FunctionTransformer(functools.partial(numpy.savetxt, PATH))`` loaded and wrote a
file on ``predict``.  So Hortus ignores skops' defaults and judges every node of
the archive itself, before anything is constructed:

- an object or a skops-special node (loss, random generator) must name a type
  in `TRUSTED_TYPES` (the estimators and transformers
  `hortus.models._estimators.build_pipeline` builds for the binary, multiclass,
  regression and ranking tasks, what they hold once fitted, and plain data);
  a class held as a value (a dtype, a dict's key type) must be in
  `TYPE_REFERENCES`, plain data types, else it reads ``type(module.Class)``
  (a class is callable: ``FunctionTransformer(func=SomeClass)`` would build one);
- a function may appear only where `TRUSTED_CALLABLES` says: written
  ``functools.partial(module.function)`` it is allowed only as the function of a
  partial (HistGradientBoosting's preprocessor holds
  ``functools.partial(sklearn.utils.validation.check_array, ...)``), written
  ``module.function`` as a plain value.  A partial is allowed only around such a
  function, never around anything else;
- any name skops reports beyond the nodes (e.g. a random generator's bit
  generator) is judged by the same lists.

A project extends the lists with `trusted_model_types` in hortus.yaml (type names,
``module.function`` or ``functools.partial(module.function)``), which the project's
reviewers own; `project_trust` reads it.  `refused_types` returns the names an
archive holds beyond the lists; `check_archive` raises ArtifactError naming them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from hortus.errors import ArtifactError

PARTIAL = "functools.partial"
PROJECT_KEY = "trusted_model_types"

#: every type the project's own models hold (checked by tests/test_artifacts_trust.py
#: for each task and estimator): review any addition as code that runs on load
TRUSTED_TYPES: frozenset[str] = frozenset({
    # plain data
    "builtins.bool", "builtins.dict", "builtins.float", "builtins.int", "builtins.list",
    "builtins.slice", "builtins.str", "builtins.tuple", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.bool", "numpy.bool_", "numpy.float32",
    "numpy.float64", "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64",
    "numpy.uint8", "numpy.uint16", "numpy.uint32", "numpy.uint64", "numpy.str_",
    "numpy.object_", "numpy.random._generator.Generator",
    # the pipeline and its preparation steps
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    # a fitted ColumnTransformer stores "passthrough" as FunctionTransformer(func=None);
    # its func is judged like any other function (numpy.savetxt is not on the list)
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.impute._base.SimpleImputer",
    # the estimators (hgb, logreg, linear)
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    # the losses and links of the fitted HistGradientBoosting models
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit", "sklearn._loss.link.Interval",
})  # fmt: skip

#: the types an artifact may hold as values (a dtype, a dict's key type), not as objects
TYPE_REFERENCES: frozenset[str] = frozenset({
    "builtins.bool", "builtins.float", "builtins.int", "builtins.str", "numpy.bool",
    "numpy.bool_", "numpy.float32", "numpy.float64", "numpy.int8", "numpy.int16",
    "numpy.int32", "numpy.int64", "numpy.uint8", "numpy.uint16", "numpy.uint32",
    "numpy.uint64", "numpy.str_", "numpy.object_",
    # the compiled loss of a fitted HistGradientBoosting loss (rebuilt from its class)
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
})  # fmt: skip

#: functions an artifact may reference, and where (see the module docstring)
TRUSTED_CALLABLES: frozenset[str] = frozenset({
    "functools.partial(sklearn.utils.validation.check_array)",
})  # fmt: skip


def _walk(tree) -> tuple[list[str], set[str]]:
    """Return (the judged name of every node, the raw names of the nodes) of a skops tree."""
    from skops.io._audit import Node
    from skops.io._general import FunctionNode, PartialNode, TypeNode

    judged: list[str] = []
    raw: set[str] = set()
    seen: set[int] = set()

    def visit(node, inside_partial: bool = False) -> None:
        if isinstance(node, (list, tuple)):
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            for child in node.values():
                visit(child)
        elif isinstance(node, Node):
            if id(node) in seen:
                return
            seen.add(id(node))
            name = f"{node.module_name}.{node.class_name}"
            raw.add(name)
            if isinstance(node, FunctionNode):
                judged.append(f"{PARTIAL}({name})" if inside_partial else name)
            elif isinstance(node, TypeNode):
                # a class as a value can be called (FunctionTransformer(func=SomeClass)):
                # only plain data types are referenced by the project's models
                judged.append(name if name in TYPE_REFERENCES else f"type({name})")
            elif isinstance(node, PartialNode):
                # a partial is judged by its function: allowed only around a trusted one
                if not isinstance(node.func, FunctionNode):
                    judged.append(PARTIAL)
                visit(node.func, inside_partial=True)
                for key in ("args", "kwds", "namespace"):
                    visit(node.children[key])
                return
            else:
                judged.append(name)
            for child in node.children.values():
                visit(child)

    visit(tree)
    return judged, raw


def archive_types(data: bytes) -> list[str]:
    """Return every name an archive holds, as judged (sorted, unique); nothing is built.

    Functions inside a partial read ``functools.partial(module.function)``.
    """
    from skops.io._audit import get_tree
    from skops.io._persist import read_schema

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        schema, context = read_schema(zf)
        tree = get_tree(schema, load_context=context, trusted=None)
    judged, raw = _walk(tree)
    # names skops declares beyond the nodes themselves (e.g. numpy.random.<bit generator>)
    hidden = set(tree.get_unsafe_set()) - raw - {PARTIAL}
    return sorted(set(judged) | hidden)


def refused_types(data: bytes, extra: Iterable[str] = ()) -> list[str]:
    """Return the names of an archive that neither the reviewed lists nor `extra` allow."""
    allowed = TRUSTED_TYPES | TRUSTED_CALLABLES | set(extra)
    return [t for t in archive_types(data) if t not in allowed]


def check_archive(data: bytes, where: str, extra: Iterable[str] = ()) -> list[str]:
    """Return the types to pass to `skops.io.loads`, or raise ArtifactError naming the refused.

    Raised before anything in the archive is constructed.
    """
    try:
        refused = refused_types(data, extra)
        untrusted = sio_untrusted(data)
    except Exception as exc:  # a broken archive: report it as such, never load it
        raise ArtifactError(f"{where}: not a readable skops archive ({exc})") from exc
    if refused:
        raise ArtifactError(
            f"{where}: refusing to load untrusted type(s) {refused}; a model artifact may "
            "hold only the estimators, transformers and functions Hortus's models use "
            f"(hortus.models._trust.TRUSTED_TYPES) and those listed under `{PROJECT_KEY}` "
            "in hortus.yaml"
        )
    return untrusted


def sio_untrusted(data: bytes) -> list[str]:
    """Return what skops itself reports as untrusted (the `trusted` list `loads` needs)."""
    import skops.io as sio

    return list(sio.get_untrusted_types(data=data))


def parse_trust(value: object, where: str) -> tuple[str, ...]:
    """Return the `trusted_model_types` names of a project, or raise naming the problem."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ArtifactError(
            f"{where}: {PROJECT_KEY} must be a list of names (module.Class, module.function "
            f"or functools.partial(module.function)), got {value!r}"
        )
    return tuple(v.strip() for v in value)


def project_trust(root: Path | None) -> tuple[str, ...]:
    """Return the extra trusted names of the project at `root` (hortus.yaml), or ()."""
    if root is None:
        return ()
    path = Path(root) / "hortus.yaml"
    if not path.is_file():
        return ()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{path}: cannot read {PROJECT_KEY} ({exc})") from exc
    if not isinstance(doc, dict):
        return ()
    return parse_trust(doc.get(PROJECT_KEY), str(path))
