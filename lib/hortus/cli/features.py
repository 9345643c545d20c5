"""`hortus features ...`: build the feature store, look up a vector, check skew."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError


def _paths(args: argparse.Namespace) -> Paths:
    return Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()


def _feature_set(paths: Paths):
    """Return the project's feature set (hortus.yaml `features.set`), or refuse clearly."""
    from hortus.project.definition import Project

    project = Project.load(paths.root)
    fs = project.feature_set()
    if fs is None:
        raise HortusError(
            f"{project.source} declares no `features`: this project has no feature store "
            "(its models train on their `table` directly)"
        )
    return project, fs


def _model_features(args: argparse.Namespace, paths: Paths, project, fs) -> list[str] | None:
    """Return the features --model reads (None without --model: every feature of the set)."""
    if not getattr(args, "model", None):
        return None
    from hortus.lakehouse.catalog import Catalog
    from hortus.project.definition import resolve_features

    model = project.model(args.model)
    features, _, _ = resolve_features(model, Catalog.load(root=paths.root), fs)
    return [f for f in features if f in fs.feature_names]


def request_keys(fs) -> list[str]:
    """Return the entity columns a request must give to look up a full feature vector.

    Groups are looked up in order (`OnlineStore.get_vector`), so a key that an
    earlier group provides as a feature (e.g. an item's category) is not asked for.
    """
    keys: list[str] = []
    provided: set[str] = set()
    for g in fs.groups:
        for k in fs.key_columns(g):
            if k not in provided and k not in keys:
                keys.append(k)
        provided |= set(g.feature_names)
    return keys


def parse_keys(pairs: list[str] | None, keys: list[str]) -> dict[str, str]:
    """Parse `--key COLUMN=VALUE` pairs and check them against the request keys.

    An unknown column, a repeated one or a missing one is refused naming the
    feature set's entity columns.

    Examples
    --------
    >>> parse_keys(["customer_id=c1"], ["customer_id"])
    {'customer_id': 'c1'}
    """
    out: dict[str, str] = {}
    expected = ", ".join(keys)
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise HortusError(
                f"--key {pair!r}: expected COLUMN=VALUE with COLUMN one of {expected}"
            )
        if name not in keys:
            raise HortusError(
                f"--key {name}: not an entity column of the feature set; expected {expected}"
            )
        if name in out:
            raise HortusError(f"--key {name} given twice")
        out[name] = value
    missing = [k for k in keys if k not in out]
    if missing:
        raise HortusError(
            f"features lookup needs --key for {', '.join(missing)} "
            f"(entity columns: {expected}), e.g. --key {missing[0]}=VALUE"
        )
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from hortus.features import store as fsm
    from hortus.lakehouse.catalog import Catalog

    paths = _paths(args)
    project, fs = _feature_set(paths)
    cols = fsm.feature_columns(fs, {c.full_name: c for c in Catalog.load(root=paths.root)})
    only = _model_features(args, paths, project, fs)
    if only is not None:
        cols = [c for c in cols if c.name in only]
    if args.json:
        print(json.dumps([vars(c) | {"allowed": c.allowed and list(c.allowed)} for c in cols],
                         indent=2, default=str))  # fmt: skip
        return 0
    for c in cols:
        print(f"{c.name:<45} {c.type:<7} {c.description}")
    print(f"{len(cols)} features" + (f" of model {args.model}" if only is not None else ""))
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from hortus.features.online import open_online, open_store
    from hortus.governance.access import current_user

    paths = _paths(args)
    project, fs = _feature_set(paths)
    entity = parse_keys(args.key, request_keys(fs))
    only = _model_features(args, paths, project, fs)
    store = _store(paths, fs, open_store)
    # through the policy: read grants on gold.fs_*, masking, one audit record per lookup
    with open_online(paths.root, fs, user=current_user(), store=store, purpose="cli") as online:
        vec = online.get_vector(entity)  # UnknownEntity: exit 2 naming it
    if only is not None:
        vec = {k: v for k, v in vec.items() if k in only}
    out = {
        "materialized_at": store.materialized_at.isoformat(),
        "refreshed_at": store.refreshed_at.isoformat(),
        "masked": [f for f in online.masked if f in vec],
        "features": vec,
    }
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        which = " x ".join(f"{k}={v}" for k, v in entity.items())
        print(f"features of {which} as of {out['refreshed_at']} ({store.backend} online store)")
        for k, v in vec.items():
            print(f"  {k:<45} {v}" + ("  (masked)" if k in out["masked"] else ""))
    return 0


def _store(paths: Paths, fs, open_store):
    """Return the project's online store (params.yaml features.online), or refuse if missing."""
    store = open_store(paths.root, fs)
    try:
        present = store.exists()
    except HortusError:
        raise
    except Exception as exc:  # a Redis server that does not answer
        raise HortusError(f"online store {store.where}: {exc}") from None
    if not present:
        raise HortusError(
            f"online store {store.where} ({store.backend}) missing: run `dvc repro features`"
        )
    return store


def cmd_keys(args: argparse.Namespace) -> int:
    from hortus.features.online import open_online, open_store
    from hortus.governance.access import current_user

    paths = _paths(args)
    _, fs = _feature_set(paths)
    names = [g.name for g in fs.groups]
    if args.group not in names:
        raise HortusError(f"unknown feature group {args.group!r}; groups: {', '.join(names)}")
    store = _store(paths, fs, open_store)
    with open_online(paths.root, fs, user=current_user(), store=store, purpose="cli") as online:
        keys = online.entity_keys(args.group, args.limit)
    if args.json:
        print(json.dumps(keys, indent=2))
    else:
        for k in keys:
            print("  ".join(f"{c}={v}" for c, v in k.items()))
        print(f"{len(keys)} keys of {args.group} (--limit {args.limit})")
    return 0


def cmd_skew(args: argparse.Namespace) -> int:
    from hortus.features import store as fsm
    from hortus.lakehouse.tables import Lakehouse
    from hortus.pipeline.stages import _skew_sample

    paths = _paths(args)
    project, fs = _feature_set(paths)
    lh = Lakehouse.open(paths.root, stage="skew")
    from hortus.features.online import open_store

    store = _store(paths, fs, open_store)
    report = fsm.skew_check(
        store, fsm.read_logs(lh, fs), _skew_sample(lh, project, args.sample, args.seed)
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        bad = report.by_feature.filter(report.by_feature["mismatches"] > 0)
        print(f"skew check of {report.entities} entities x {report.by_feature.height} features "
              f"as of {report.at.isoformat()}: {'OK' if report.ok else 'DIFFERENCES'}")  # fmt: skip
        for row in bad.iter_rows(named=True):
            print(f"  {row['feature']}: {row['mismatches']}/{row['compared']} differ, "
                  f"max |diff| {row['max_abs_diff']}; e.g. {row['example']}")  # fmt: skip
    return 0 if report.ok else 1


def add_parsers(sub) -> None:
    """Add `hortus features` and its subcommands."""
    from hortus.cli._common import _stage, add_executor_options

    only = "only the features this model reads (default: every feature of the feature set)"

    f = sub.add_parser(
        "features",
        help="feature store: build, list, look up a vector, check skew",
        description="The project's feature store (hortus.yaml `features`): offline logs in "
        "gold, the online store (SQLite, or Redis per params.yaml features.online).",
    )
    fsub = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = fsub.add_parser(
        "build",
        help="DVC stage: build offline logs, materialise the online store, check skew",
        description="DVC stage `features`: write the offline feature logs, materialise the "
        "SQLite online store as of the last event, fail on training/serving skew, and build "
        "the labelled examples (hortus.yaml `examples`).  The feature set is the project's; "
        "--model is accepted for symmetry and checked against hortus.yaml.",
    )
    b.add_argument("--model", metavar="NAME", help="check that hortus.yaml declares this model")
    b.add_argument("--params", help="params file (default: params.yaml at the root)")
    add_executor_options(b)
    b.set_defaults(func=_stage("features"))
    ls = fsub.add_parser("list", help="list every feature", description="List every feature.")
    ls.add_argument("--model", metavar="NAME", help=only)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    lk = fsub.add_parser(
        "lookup",
        help="print one online feature vector (as your grants allow; audited)",
        description="Look up the online feature vector of one request, given by the "
        "feature set's entity columns: --key COLUMN=VALUE once per column (an unknown or "
        "missing column is refused, naming the expected ones).  The lookup goes through the "
        "access policy like a table read: it needs the read grant on every gold.fs_<group> "
        "table, features from columns you may not unmask are masked, and it is audited.  An "
        "entity the store does not hold is an error (exit 2) naming it.",
    )
    lk.add_argument(
        "--key",
        action="append",
        metavar="COLUMN=VALUE",
        help="an entity key of the request (repeat for each entity column)",
    )
    lk.add_argument("--model", metavar="NAME", help=only)
    lk.add_argument("--json", action="store_true")
    lk.set_defaults(func=cmd_lookup)
    ky = fsub.add_parser(
        "keys",
        help="list entity keys the online store holds for a group",
        description="List entity keys of one feature group in the online store (sorted, "
        "--limit of them), e.g. to find a known user for `features lookup`.  Needs the read "
        "grant on the group's table gold.fs_<group>; audited.",
    )
    ky.add_argument("group", help="a feature group, e.g. user_profile")
    ky.add_argument("--limit", type=int, default=20)
    ky.add_argument("--json", action="store_true")
    ky.set_defaults(func=cmd_keys)
    sk = fsub.add_parser(
        "skew",
        help="compare offline and online values for sampled entities",
        description="Compare offline (as-of join) and online (SQLite) feature values for a "
        "seeded sample of request keys (hortus.yaml `features.entities`); exit 1 on any "
        "difference.",
    )
    sk.add_argument("--sample", type=int, default=500)
    sk.add_argument("--seed", type=int, default=0)
    sk.add_argument("--json", action="store_true")
    sk.set_defaults(func=cmd_skew)
