"""One typed schema per params.yaml section: names, types and ranges, checked before work.

Every stage reads its section through `hortus.params.load_section`, which calls
`check_section`; `hortus params check` runs `file_problems` on the whole file; `hortus
notebooks run train -p ...` checks the values given with `check_values`.  A problem
names the file, the key, what was expected and the valid names:

    params.yaml: train.max_iterr: unknown key; valid: estimator, max_iter, ...
    params.yaml: train.max_iter: expected int >= 1, got 'ten'

Flat sections are described here key by key.  Nested sections that already validate
themselves when parsed are checked by those parsers, so the rules live in one place:
`gate` (`hortus.checks.gate.GateConfig`, `hortus.monitoring.drift.DriftConfig`),
`monitor` (`hortus.monitoring.monitors.MonitorConfig`), `alerts` (the sinks and rules
of `hortus.monitoring.alerts`), `model_card` (`hortus.publishing.model_card.CardText`)
and `simulate` (the `SimConfig` of the project's simulator, hortus.yaml `simulator`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hortus.errors import HortusError


class ParamsError(HortusError):
    """A params.yaml section has an unknown key or a value of the wrong type or range."""


@dataclass(frozen=True)
class Rule:
    """What one key accepts: `expected` is said in the message, `ok` decides."""

    expected: str
    ok: Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _mapping(v: Any) -> bool:
    return v is None or isinstance(v, Mapping)


INT = Rule("int", _int)
INT_GE1 = Rule("int >= 1", lambda v: _int(v) and v >= 1)
NUM_GE0 = Rule("number >= 0", lambda v: _num(v) and v >= 0)
NUM_GT0 = Rule("number > 0", lambda v: _num(v) and v > 0)
FRACTION = Rule("number in (0, 1)", lambda v: _num(v) and 0 < v < 1)
BOOL = Rule("true or false", lambda v: isinstance(v, bool))
MAPPING = Rule("a mapping", _mapping)

#: the train section's keys: the spec's own (estimator, holdout_fraction, k, seed,
#: threshold, threads) and the estimator hyper-parameters Hortus knows (hgb: max_iter ...
#: min_samples_leaf, max_depth, max_bins; logreg: max_iter, C; linear: alpha)
TRAIN: dict[str, Rule] = {
    "estimator": Rule("one of hgb, logreg, linear", lambda v: v in ("hgb", "logreg", "linear")),
    "max_iter": INT_GE1,
    "learning_rate": NUM_GT0,
    "max_leaf_nodes": Rule("int >= 2", lambda v: _int(v) and v >= 2),
    "l2_regularization": NUM_GE0,
    "min_samples_leaf": INT_GE1,
    "max_depth": Rule("int >= 1 or null", lambda v: v is None or (_int(v) and v >= 1)),
    "max_bins": Rule("int in [2, 255]", lambda v: _int(v) and 2 <= v <= 255),
    "C": NUM_GT0,
    "alpha": NUM_GE0,
    "holdout_fraction": FRACTION,
    "k": INT_GE1,
    "seed": INT,
    "threshold": FRACTION,
    "threads": INT_GE1,
}

#: flat sections, key by key (an empty mapping: the section takes no keys)
FLAT: dict[str, dict[str, Rule]] = {
    "ingest": {
        "flush_rows": INT_GE1,
        "max_file_mb": NUM_GT0,
        "max_line_kb": NUM_GT0,
        "max_ratio": Rule("number >= 1", lambda v: _num(v) and v >= 1),
    },
    "silver": {"future_tolerance_minutes": NUM_GE0, "chunk_rows": INT_GE1},
    "kpis": {},
    "features": {
        "label_horizon_days": NUM_GT0,
        "skew_sample": INT_GE1,
        "seed": INT,
        "skew_tolerance": NUM_GE0,
        # the online store (hortus.features.online.check_online_params says which key is wrong)
        "online": Rule(
            "a mapping {backend: sqlite|redis, url, prefix, path}",
            lambda v: (
                isinstance(v, Mapping)
                and set(v) <= {"backend", "url", "prefix", "path"}
                and v.get("backend", "sqlite") in ("sqlite", "redis")
            ),
        ),
    },
    "register": {},
    "score": {
        "model": Rule(
            "champion, registered, an alias or a version number >= 1",
            lambda v: (isinstance(v, str) and bool(v.strip())) or (_int(v) and v >= 1),
        ),
        "fallback_to_gated": BOOL,
        "top_k": INT_GE1,
    },
    "docs": {},
    "maintain": {  # hortus.lakehouse.maintain.MaintainConfig
        "enabled": BOOL,
        "small_file_bytes": INT_GE1,
        "min_small_files": INT_GE1,
        "target_file_bytes": INT_GE1,
        "vacuum_hours": NUM_GE0,
        "retention_vacuum_hours": NUM_GE0,
        "checkpoint_commits": INT_GE1,
    },
}


def _flat(body: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> list[str]:
    """Return the problems of a flat mapping: unknown keys and values of the wrong kind."""
    valid = ", ".join(rules) or "none (the section takes no keys)"
    out = []
    for key, value in body.items():
        rule = rules.get(key)
        if rule is None:
            out.append(f"{where}.{key}: unknown key; valid: {valid}")
        elif not rule.ok(value):
            out.append(f"{where}.{key}: expected {rule.expected}, got {value!r}")
    return out


def _delegate(where: str, parse: Callable[[], Any]) -> list[str]:
    """Run a section's own parser; return its complaint (it names the key) as a problem."""
    try:
        parse()
    except (HortusError, ValueError, TypeError) as exc:
        text = str(exc)
        return [text if text.startswith(where.split(":")[0]) else f"{where}: {text}"]
    return []


def _train(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    out = _flat({k: v for k, v in body.items() if k != "models"}, TRAIN | {"models": MAPPING},
                where)  # fmt: skip
    models = body.get("models") or {}
    if not isinstance(models, Mapping):
        return [
            *out,
            f"{where}.models: expected a mapping model name -> train keys, got {models!r}",
        ]
    known = _project_models(root)
    for name, overrides in models.items():
        if known is not None and name not in known:
            out.append(f"{where}.models.{name}: unknown model; models of hortus.yaml: "
                       f"{', '.join(known)}")  # fmt: skip
        elif not _mapping(overrides):
            out.append(f"{where}.models.{name}: expected a mapping, got {overrides!r}")
        else:
            out += _flat(overrides or {}, TRAIN, f"{where}.models.{name}")
    return out


def _project_models(root: Path | None) -> list[str] | None:
    """Return the model names of the project at `root`, or None when there is none."""
    if root is None or not (Path(root) / "hortus.yaml").is_file():
        return None
    from hortus.project.definition import Project

    try:
        return list(Project.load(Path(root)).models)
    except HortusError:
        return None  # hortus.yaml's own mistakes are reported where it is read


def _gate(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.checks.gate import GATE_SECTIONS, GateConfig
    from hortus.monitoring.drift import CalibrationConfig, DriftConfig

    rules = {"champion_if_none": BOOL, "serving_users": INT_GE1}
    out = _flat(body, rules | dict.fromkeys(GATE_SECTIONS, MAPPING), where)
    # one subsection at a time, so `hortus params check` lists a problem of each
    for key in GATE_SECTIONS:
        if key not in body or not _mapping(body[key]):
            continue
        holder: dict[str, Any] = {}

        def parse(key: str = key, holder: dict = holder) -> None:
            holder["config"] = GateConfig.from_dict({key: body[key]}, where)

        out += _delegate(where, parse)
        if key == "drift" and "config" in holder:
            drift = holder["config"].drift
            out += _delegate(
                where, lambda d=drift: DriftConfig.from_dict(d, source=f"{where}.drift")
            )
            cal = holder["config"].calibration
            if cal is not None:
                out += _delegate(
                    f"{where}.drift.calibration", lambda c=cal: CalibrationConfig.from_dict(c)
                )
    return out


def _monitor(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.monitoring.drift import DriftConfig
    from hortus.monitoring.monitors import MonitorConfig

    def parse() -> None:
        config = MonitorConfig.from_dict(body, source=where)
        DriftConfig.from_dict(config.drift, source=f"{where}.drift")

    return _delegate(where, parse)


def _alerts(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.monitoring import actions, alerts

    out = _flat(
        body, {"sinks": MAPPING, "rules": Rule("a list of rules", _list), "actions": MAPPING}, where
    )
    acts = body.get("actions")
    out += _delegate(f"{where}.actions", lambda: actions.load_actions(acts, source=where))
    sinks = body.get("sinks") or {}
    if not isinstance(sinks, Mapping):
        return out
    # webhook secrets come from environment variables at run time: a check needs none
    env = {var: "" for spec in sinks.values() if isinstance(spec, Mapping)
           for var in dict(spec.get("headers_from_env") or {}).values()}  # fmt: skip
    for name, spec in sinks.items():
        out += _delegate(
            f"{where}.sinks", lambda n=name, s=spec: alerts.build_sinks({n: s}, env=env)
        )
    rules = body.get("rules") or []
    for i, spec in enumerate(rules if isinstance(rules, list) else []):
        out += _delegate(f"{where}.rules[{i}]",
                         lambda s=spec: alerts.load_rules([s], sinks=list(sinks)))  # fmt: skip
    names = [s.get("name") for s in rules if isinstance(s, Mapping)] if _list(rules) else []
    out += [f"{where}.rules: rule name {n!r} defined more than once"
            for n in sorted({n for n in names if n and names.count(n) > 1})]  # fmt: skip
    return out


def _list(v: Any) -> bool:
    return v is None or isinstance(v, list)


def _model_card(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.publishing.model_card import CardText

    out = []
    for name, doc in body.items():
        if not _mapping(doc):
            out.append(f"{where}.{name}: expected a mapping (owners, intended_use, "
                       f"out_of_scope, limitations), got {doc!r}")  # fmt: skip
            continue
        out += _delegate(where, lambda d=doc, n=name: CardText.from_dict(d, f"{where}.{n}"))
    return out


def _executor(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.executor.config import ExecutorConfig

    try:
        ExecutorConfig.from_mapping(body)
    except HortusError as exc:  # one line per problem, each naming the key
        return [line.replace("params.yaml: executor", where, 1) for line in str(exc).splitlines()]
    return []


def _audit(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    from hortus.governance._audit_writer import AuditSettings

    return _delegate(where, lambda: AuditSettings.from_mapping(body, root, where))


def _simulate(body: Mapping[str, Any], where: str, root: Path | None) -> list[str]:
    """Check the keys against the project simulator's SimConfig (no simulator: not checked)."""
    import dataclasses

    if root is None or not (Path(root) / "hortus.yaml").is_file():
        return []
    from hortus.config import Paths
    from hortus.lakehouse.snapshot import simulator

    try:
        config = simulator(Paths.at(Path(root))).SimConfig
    except HortusError:
        return []  # no simulator: `hortus simulate` says so when it is asked to run
    names = [f.name for f in dataclasses.fields(config)]
    out = [f"{where}.{k}: unknown key; valid: {', '.join(names)}" for k in body if k not in names]
    if not out:
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in body.items()}
        out = _delegate(where, lambda: config(**fields))
    return out


NESTED: dict[str, Callable[[Mapping[str, Any], str, Path | None], list[str]]] = {
    "simulate": _simulate,
    "train": _train,
    "gate": _gate,
    "monitor": _monitor,
    "alerts": _alerts,
    "model_card": _model_card,
    "executor": _executor,
    "audit": _audit,
}

#: every section a params.yaml may have, in the order of the repository's file
SECTIONS = ("simulate", "ingest", "silver", "kpis", "features", "train", "register", "gate",
            "score", "monitor", "maintain", "alerts", "docs", "model_card",
            "executor", "audit")  # fmt: skip


def section_problems(
    section: str, body: Any, *, source: str = "params.yaml", root: Path | None = None
) -> list[str]:
    """Return every problem of one section (empty when it is valid or has no schema).

    `root` is the project folder (hortus.yaml): with it, `train.models` names and the
    `simulate` keys are checked against the project.

    Examples
    --------
    >>> section_problems("train", {"max_iterr": 10, "k": 0})[0][:42]
    'params.yaml: train.max_iterr: unknown key;'
    >>> section_problems("train", {"k": 0})
    ['params.yaml: train.k: expected int >= 1, got 0']
    """
    where = f"{source}: {section}"
    if body is None:
        return []
    if not isinstance(body, Mapping):
        return [f"{where}: expected a mapping of keys, got {body!r}"]
    if section in FLAT:
        return _flat(body, FLAT[section], where)
    if section in NESTED:
        return NESTED[section](body, where, root)
    return []


def check_section(
    section: str, body: Any, *, source: str = "params.yaml", root: Path | None = None
) -> None:
    """Raise ParamsError listing every problem of one section, one per line."""
    problems = section_problems(section, body, source=source, root=root)
    if problems:
        raise ParamsError("\n".join(problems))


def checked_section(path: Path, section: str, *, root: Path | None = None) -> dict[str, Any]:
    """Return one section of a params file checked against its schema ({} when absent).

    For commands that read an optional section (`hortus monitor run` / `watch`); a
    stage whose section must exist uses `load_section` then `check_section`.

    Examples
    --------
    >>> checked_section(Path("params.yaml"), "ingest")  # doctest: +SKIP
    ParamsError: params.yaml: ingest.flush_rows: expected int >= 1, got 'lots'
    """
    from hortus.params import read_params

    path = Path(path)
    body = read_params(path).get(section)
    check_section(section, body, source=path.name, root=root)
    return dict(body or {})


def check_values(section: str, values: Mapping[str, Any], *, source: str) -> None:
    """Check the values of a flat section's known keys (e.g. notebook -p overrides).

    Keys the section does not describe are left to the caller (a notebook's own
    parameters such as `model`).
    """
    rules = TRAIN if section == "train" else FLAT.get(section, {})
    problems = [f"{source} {key}: expected {rules[key].expected}, got {value!r}"
                for key, value in values.items()
                if key in rules and value is not None and not rules[key].ok(value)]  # fmt: skip
    if problems:
        raise ParamsError("\n".join(problems))


def file_problems(path: Path, *, root: Path | None = None) -> list[str]:
    """Return every problem of a params file: unknown sections, then each section's."""
    from hortus.params import read_params

    path = Path(path)
    doc = read_params(path)
    source = path.name
    out = [f"{source}: {name}: unknown section; valid: {', '.join(SECTIONS)}"
           for name in doc if name not in SECTIONS]  # fmt: skip
    for name in SECTIONS:
        if name in doc:
            out += section_problems(name, doc[name], source=source, root=root or path.parent)
    return out
