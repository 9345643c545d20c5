"""`hortus features ...`: build the feature store, look up a vector, check skew."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError


def _paths(args: argparse.Namespace) -> Paths:
    return Paths.at(Path(args.root)) if getattr(args, "root", None) else Paths.discover()


def cmd_list(args: argparse.Namespace) -> int:
    from hortus import feature_store as fsm
    from hortus.catalog import Catalog
    from hortus.plantshop.features import FEATURES

    cols = fsm.feature_columns(FEATURES, {c.full_name: c for c in Catalog.load()})
    if args.json:
        print(json.dumps([vars(c) | {"allowed": c.allowed and list(c.allowed)} for c in cols],
                         indent=2, default=str))  # fmt: skip
        return 0
    for c in cols:
        print(f"{c.name:<45} {c.type:<7} {c.description}")
    print(f"{len(cols)} features")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from hortus import feature_store as fsm
    from hortus.plantshop.features import FEATURES

    paths = _paths(args)
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    try:
        vec = store.get_vector({"user_id": args.user, "plant_id": args.plant})
    except FileNotFoundError as exc:
        raise HortusError(str(exc)) from None
    out = {"materialized_at": store.materialized_at.isoformat(), "features": vec}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"features of user {args.user} x plant {args.plant} as of {out['materialized_at']}")
        for k, v in vec.items():
            print(f"  {k:<45} {v}")
    return 0


def cmd_skew(args: argparse.Namespace) -> int:
    from hortus import feature_store as fsm
    from hortus.plantshop.features import FEATURES
    from hortus.tables import Lakehouse

    paths = _paths(args)
    lh = Lakehouse.open(paths.root, stage="skew")
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    if not paths.online_store.exists():
        raise HortusError(f"online store {paths.online_store} missing: run `dvc repro features`")
    report = fsm.skew_check(
        store, fsm.read_logs(lh, FEATURES), fsm.sample_entities(lh, args.sample, args.seed)
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
    from hortus.cli import _stage

    f = sub.add_parser(
        "features",
        help="feature store: build, list, look up a vector, check skew",
        description="The feature store: offline logs in gold, the SQLite online store.",
    )
    fsub = f.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = fsub.add_parser(
        "build",
        help="DVC stage: build offline logs, materialise the online store, check skew",
        description="DVC stage `features`: write gold.fs_* logs, materialise the SQLite "
        "online store as of the last event, and fail on training/serving skew.",
    )
    b.add_argument("--params", help="params file (default: params.yaml at the root)")
    b.set_defaults(func=_stage("features"))
    ls = fsub.add_parser("list", help="list every feature", description="List every feature.")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    lk = fsub.add_parser(
        "lookup",
        help="print one online feature vector",
        description="Look up the online feature vector of one user x plant request.",
    )
    lk.add_argument("--user", required=True)
    lk.add_argument("--plant", required=True)
    lk.add_argument("--json", action="store_true")
    lk.set_defaults(func=cmd_lookup)
    sk = fsub.add_parser(
        "skew",
        help="compare offline and online values for sampled entities",
        description="Compare offline (as-of join) and online (SQLite) feature values for a "
        "seeded sample of user x plant pairs; exit 1 on any difference.",
    )
    sk.add_argument("--sample", type=int, default=500)
    sk.add_argument("--seed", type=int, default=0)
    sk.add_argument("--json", action="store_true")
    sk.set_defaults(func=cmd_skew)
