"""The input signature of a model: types, nullability, categories and ranges.

Derived from the training rows and the data contracts; `Signature.check` and
`Signature.validate` judge a frame before it is scored.  Re-exported by
`hortus.models.modeling`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from hortus.errors import SignatureError
from hortus.lakehouse.contracts import Contract
from hortus.models._spec import ModelSpec, _shown


def _type_name(dtype: pl.DataType) -> str | None:
    """Return the contract type name of a polars dtype (None for the Null dtype)."""
    if dtype == pl.Null:
        return None
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return f"unsupported ({dtype})"


def _compatible(actual: str | None, expected: str) -> bool:
    return actual is None or actual == expected or (actual == "int" and expected == "float")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _contract_bound(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value.startswith("@")):
        return None  # references such as @shop_opened have no fixed value
    return _json_value(value)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _comparable(s: pl.Series, type_name: str, bound: Any) -> tuple[pl.Series, Any]:
    """Return the series and a bound in a form polars can compare."""
    if type_name == "date":
        return s, date.fromisoformat(str(bound))
    if type_name == "datetime":
        if s.dtype.time_zone is not None:  # type: ignore[attr-defined]
            s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return s, _naive_utc(datetime.fromisoformat(str(bound)))
    return s, bound


@dataclass(frozen=True)
class Signature:
    """The input signature of a model: one dict per feature.

    Each column dict has name, type (contract type: string, int, float, bool,
    date, datetime), nullable, categories (list or None), min and max (JSON
    values; dates and datetimes as ISO strings).

    `check` reports every problem of a frame; problems starting with
    "warning:" do not block scoring (extra columns, which are ignored, and
    values outside the training/contract range, which the model can still
    score).  Missing columns, wrong types, unseen categories and nulls in a
    non-nullable column block: `validate` raises `SignatureError` listing them.
    """

    columns: tuple[dict, ...]

    @property
    def names(self) -> list[str]:
        """Return the feature names in input order."""
        return [c["name"] for c in self.columns]

    @classmethod
    def from_frame(
        cls, df: pl.DataFrame, spec: ModelSpec, contracts: Sequence[Contract] = ()
    ) -> Signature:
        """Derive the signature of `spec.features` from training rows and data contracts.

        The type comes from the frame's dtype.  For a feature that is a column of
        one of `contracts` (the first that has it), nullability comes from the
        contract, categories from its allowed values and min/max from its bounds
        when set.  Otherwise nullable means "nulls were seen in training",
        categories are the sorted values seen in training (categoricals only)
        and min/max are the observed extremes (numbers, dates, datetimes).
        """
        missing = [f for f in spec.features if f not in df.columns]
        if missing:
            raise SignatureError(f"the frame lacks feature column(s) {missing}")
        by_name = {}
        for contract in contracts:
            for col in contract.columns:
                by_name.setdefault(col.name, col)
        out = []
        for name in spec.features:
            s = df[name]
            type_name = _type_name(s.dtype)
            if type_name is None or type_name.startswith("unsupported"):
                raise SignatureError(f"feature {name!r} has a type a signature cannot hold: {s}")
            col = by_name.get(name)
            values = s.fill_nan(None) if type_name == "float" else s
            lo = hi = None
            if type_name in ("int", "float", "date", "datetime"):
                lo, hi = _json_value(values.min()), _json_value(values.max())
            categories = None
            if name in spec.categorical:
                seen = values.drop_nulls().unique().sort()
                if type_name in ("date", "datetime"):
                    seen = seen.cast(pl.String)
                categories = seen.to_list()
            nullable = bool(values.null_count())
            if col is not None:
                nullable = col.nullable
                if col.allowed is not None:
                    categories = [_json_value(v) for v in col.allowed]
                lo = _contract_bound(col.min) if _contract_bound(col.min) is not None else lo
                hi = _contract_bound(col.max) if _contract_bound(col.max) is not None else hi
            out.append(
                {
                    "name": name,
                    "type": type_name,
                    "nullable": nullable,
                    "categories": categories,
                    "min": lo,
                    "max": hi,
                }
            )
        return cls(columns=tuple(out))

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return {"columns": [dict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, doc: dict) -> Signature:
        """Rebuild a signature from `to_dict` output (other keys are ignored)."""
        try:
            cols = tuple(
                {
                    "name": str(c["name"]),
                    "type": str(c["type"]),
                    "nullable": bool(c["nullable"]),
                    "categories": None if c.get("categories") is None else list(c["categories"]),
                    "min": c.get("min"),
                    "max": c.get("max"),
                }
                for c in doc["columns"]
            )
        except (KeyError, TypeError) as exc:
            raise SignatureError(f"not a model signature: missing {exc}") from exc
        return cls(columns=cols)

    def to_json(self) -> str:
        """Return the signature as deterministic JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def check(self, df: pl.DataFrame) -> list[str]:
        """Return every problem of `df` as model input; non-blocking ones start with "warning:"."""
        problems: list[str] = []
        for c in self.columns:
            name, expected = c["name"], c["type"]
            if name not in df.columns:
                problems.append(f"column {name!r} is missing")
                continue
            s = df[name]
            actual = _type_name(s.dtype)
            if not _compatible(actual, expected):
                problems.append(f"column {name!r} has type {actual}, expected {expected}")
                continue
            if actual == "float":
                s = s.fill_nan(None)
            if s.null_count() and not c["nullable"]:
                problems.append(
                    f"column {name!r} has {s.null_count()} null value(s) but is not nullable"
                )
            if c["categories"] is not None:
                known = pl.Series(c["categories"]).cast(pl.String)
                values = s.cast(pl.String).drop_nulls().unique()
                unseen = values.filter(~values.is_in(known.implode()))
                if len(unseen):
                    problems.append(
                        f"column {name!r} has unseen categor{'y' if len(unseen) == 1 else 'ies'} "
                        f"{_shown(unseen.sort().to_list())}"
                    )
            problems += self._range_warnings(c, s, actual)
        extra = [n for n in df.columns if n not in self.names]
        if extra:
            problems.append(
                f"warning: extra column(s) {_shown(extra)} are not model inputs and are ignored"
            )
        return problems

    @staticmethod
    def _range_warnings(c: dict, s: pl.Series, actual: str | None) -> list[str]:
        out = []
        if actual is None or c["type"] not in ("int", "float", "date", "datetime"):
            return out
        for key, word, op in (
            ("min", "below the minimum", "lt"),
            ("max", "above the maximum", "gt"),
        ):
            if c[key] is None:
                continue
            values, bound = _comparable(s, c["type"], c[key])
            outside = values.filter(getattr(values, op)(bound))
            if len(outside):
                extreme = outside.min() if op == "lt" else outside.max()
                out.append(
                    f"warning: column {c['name']!r} has {len(outside)} value(s) {word} "
                    f"{c[key]} (e.g. {_json_value(extreme)})"
                )
        return out

    def validate(self, df: pl.DataFrame) -> None:
        """Raise SignatureError listing every blocking problem of `df` (warnings pass)."""
        blocking = [p for p in self.check(df) if not p.startswith("warning:")]
        if blocking:
            raise SignatureError(
                "the frame does not match the model signature:\n"
                + "\n".join(f"  - {p}" for p in blocking)
            )
