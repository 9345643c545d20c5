"""`hortus init DIR --from FILE`: scaffold a new Hortus project from one table."""

from __future__ import annotations

import argparse
from pathlib import Path


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def cmd_init(args: argparse.Namespace) -> int:
    """Draft a project from the table, write it to DIR, print what to confirm."""
    from hortus.project.scaffold import infer, init_project

    draft = infer(
        Path(args.source),
        target=args.target,
        time=args.time,
        task=args.task,
        name=args.name or Path(args.dir).name,
        features=_names(args.features),
        sensitive=_names(args.sensitive),
        ids=_names(args.ids),
    )
    done = init_project(Path(args.dir), draft)
    print(f"made {draft.task} project {draft.name!r} in {done['path']} from {draft.source.name} "
          f"({draft.rows:,} rows; table silver.{draft.table}, model {draft.name})")  # fmt: skip
    roles = {
        "features": draft.features,
        "ids (never features)": draft.ids,
        "direct personal data (tokenised in silver)": draft.direct,
        "sensitive attributes (confirm)": draft.sensitive,
        "segments": draft.segments,
    }
    for label, names in roles.items():
        print(f"  {label}: {', '.join(names) if names else '-'}")
    for note in draft.notes:
        print(f"  note: {note}")
    if not done["committed"]:
        print("  not committed (git does not know who you are): commit it with `git commit`")
    print(
        f"next: cd {args.dir} && make run   (then make test); confirm contracts.yaml, "
        "hortus.yaml and params.yaml's model_card"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `hortus init`."""
    p = sub.add_parser(
        "init",
        help="scaffold a new Hortus project from one table (CSV or Parquet)",
        description="Make a new project in DIR from one table: a draft contract inferred from "
        "the data (types, nullability, ranges, allowed values, PII classes, sensitive columns "
        "to confirm), hortus.yaml, params.yaml, dvc.yaml, access_policy.yaml, the notebooks, "
        "tests, a Makefile (make run, make test) and data.dvc pinning the data. Nothing is "
        "left behind when the input is refused.",
    )
    p.add_argument("dir", help="the new project's folder (must not exist, or be empty)")
    p.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help="the table: FILE.csv (with a header line) or FILE.parquet")  # fmt: skip
    p.add_argument("--target", required=True, help="the column to predict")
    p.add_argument("--time", help="the time column (the hold-out is the latest rows)")
    p.add_argument("--task", choices=["binary", "multiclass", "regression"],
                   help="default: inferred from the target (numeric with many values: "
                   "regression; 2 classes: binary; 3..20: multiclass)")  # fmt: skip
    p.add_argument("--name", help="project and model name (default: the folder's name)")
    p.add_argument(
        "--features",
        metavar="COL,COL",
        help="the feature columns (default: every column without another role)",
    )
    p.add_argument(
        "--sensitive",
        metavar="COL,COL",
        help="more sensitive attributes besides those found by name (sex, age...)",
    )
    p.add_argument(
        "--ids",
        metavar="COL,COL",
        help="more identifier columns besides those found by name or uniqueness",
    )
    p.set_defaults(func=cmd_init)
