"""Access control: groups and grants on tables, columns and models, as code.

The policy lives in `access_policy.yaml` at the project root and is reviewed like
code; `policy_version` is the sha256 of its bytes and is stamped on every
decision (and, by the caller, on every audit record).

Identity
--------
`current_user()` is HORTUS_USER, else the OS user.  A user the policy does not
list belongs to no group and is allowed nothing.

Objects and actions
-------------------
- ``read``, ``write`` on a table ``layer.table`` (``silver.orders``); ``erase``: remove a
  data subject's rows and the history that held them (`hortus erase`); ``rotate_keys``:
  re-key the table's PII tokens in a key rotation (`hortus keys rotate pii`);
- ``unmask`` on a column ``layer.table.column`` (``silver.customers.email``): read it
  in the clear; ``reidentify`` on a column: turn its keyed tokens back into raw
  values;
- ``train``, ``register``, ``promote``, ``approve`` on a model name
  (``churn``); ``predict``: call the model through `hortus serve`.

Grant patterns are `fnmatch` globs (case-sensitive); ``*`` also matches dots.

Rules
-----
1. Grants only add rights: an action is allowed only if one of the user's groups
   grants it on a matching pattern (`Decision.grant` names that grant).
2. Restricted zone: objects in the restricted layers (bronze, quarantine, from
   `hortus.config.RESTRICTED_LAYERS`) are open only to the owner groups the policy
   lists under `restricted_zone`, whatever any glob says; an owner still needs a
   grant.  The policy must name owners for every restricted layer.
3. Row filters (`read_plan`): a group's filters that match the table are ANDed;
   the user sees the union (OR) over the groups that grant read on the table.
   A granting group with no filter on the table therefore opens every row.
   Filters of groups that do not grant read on the table play no part.  A
   filter on a column the table does not have makes that group's clause false
   (fail closed) and is reported by `Policy.lint`.  Writes are not row-filtered.
4. Masking (`read_plan`): a column is protected when its contract marks it
   `pii` (direct, quasi, free_text) or `sensitive`; a column missing from the
   contract is unclassified and protected too (fail closed).  A protected column
   is masked unless a group of the user grants `unmask` on ``table.column``.
   Masking keeps the column name and dtype:

   - strings: values that already are keyed tokens (``tok_`` + 24 hex, as silver
     stores direct identifiers) are kept, so masked columns still join; other
     values become keyed tokens with the PII key (`hortus.lakehouse.pii.token`, the same
     tokens silver uses).  Without a key they become null.  Note that tokens of
     a low-cardinality column (a region) keep its distribution.
   - every other type (numbers, dates, datetimes, booleans): null.

   Unclassified columns (not in the contract) are masked to null whatever type.

Enforcing it in the table API
-----------------------------
`hortus.lakehouse.tables.Lakehouse` enforces the policy for notebooks, the CLI and the
stages: on every read ``plan = policy.read_plan(user, name, columns, contract,
key=pii_key)`` then ``plan.apply(scan)``, logged as ``AuditRecord(user, "read",
name, detail=plan.describe(), policy_version=policy.version)``; on `AccessDenied`
the decision is logged (``AuditRecord.from_decision``) and flushed before the
error is raised; every write needs ``policy.require(user, "write", name)``;
other guarded actions (promote, approve...) go through `Lakehouse.authorize`.
A project without a policy file gets `Policy.for_project`'s deny-all policy.
See `hortus.governance.audit`.

Examples
--------
>>> policy = Policy.load(Path("access_policy.yaml"))                    # doctest: +SKIP
>>> policy.decide("alex", "read", "bronze.users").allowed               # doctest: +SKIP
False
>>> plan = policy.read_plan("elena", "silver.customers", None, contract)    # doctest: +SKIP
>>> plan.apply(pl.scan_delta(path)).collect()                           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import yaml

from hortus.config import POLICY_FILE, RESTRICTED_LAYERS
from hortus.errors import HortusError
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.pii import TOKEN_HEX, TOKEN_PREFIX, token
from hortus.provenance import current_user

__all__ = [
    "ABSENT_VERSION",
    "ACTIONS",
    "POLICY_FILE",
    "AccessDenied",
    "Decision",
    "Grant",
    "Policy",
    "PolicyError",
    "ReadPlan",
    "RowFilter",
    "check_four_eyes",
    "current_user",
    "mask_expr",
]

ABSENT_VERSION = "absent"  # policy_version when the project has no policy file

# action -> kind of object it applies to
ACTIONS: dict[str, str] = {
    "read": "table",
    "write": "table",
    "erase": "table",  # delete a data subject's rows and history (hortus.governance.erasure)
    "maintain": "table",  # compact, checkpoint, apply retention, vacuum (hortus.lakehouse.maintain)
    "rotate_keys": "table",  # re-key its PII tokens in a key rotation (hortus.governance.rotation)
    "unmask": "column",
    "reidentify": "column",
    "train": "model",
    "register": "model",
    "promote": "model",
    "approve": "model",
    "predict": "model",  # call it through the online service (hortus.serving.service)
}
# YAML section of a group -> the actions it may grant
_SECTIONS: dict[str, tuple[str, ...]] = {
    "tables": ("read", "write", "erase", "maintain", "rotate_keys"),
    "columns": ("unmask", "reidentify"),
    "models": ("train", "register", "promote", "approve", "predict"),
}
_TOP_KEYS = {"version", "restricted_zone", "users", "groups"}
_GROUP_KEYS = {"description", "row_filters", *_SECTIONS}
_FILTER_KEYS = {"tables", "column", "op", "values"}
FILTER_OPS = ("in", "==")
PROTECTED_PII = ("direct", "quasi", "free_text")
TOKEN_PATTERN = rf"^{TOKEN_PREFIX}[0-9a-f]{{{TOKEN_HEX}}}$"

_T = TypeVar("_T", pl.DataFrame, pl.LazyFrame)


class PolicyError(HortusError):
    """The policy file is malformed (the message names the file, group and key)."""


@dataclass(frozen=True)
class Decision:
    """The answer to "may USER do ACTION to OBJECT?", with the grant that decided it."""

    allowed: bool
    user: str
    action: str
    object: str
    grant: str | None  # the grant that allowed it, e.g. "analysts: read gold.sales_daily"
    missing: str | None  # what was missing when denied
    policy_version: str
    groups: tuple[str, ...] = ()

    def explain(self) -> str:
        """Return a few lines for `hortus access check USER ACTION OBJECT`."""
        verdict = "ALLOWED" if self.allowed else "DENIED"
        groups = ", ".join(self.groups) if self.groups else "none (not in the policy)"
        lines = [
            f"{verdict}: {self.user} {self.action} {self.object}",
            f"  groups of {self.user}: {groups}",
        ]
        if self.allowed:
            lines.append(f"  allowed by grant: {self.grant}")
        else:
            lines.append(f"  missing: {self.missing}")
        lines.append(f"  policy_version: {self.policy_version}")
        return "\n".join(lines)


class AccessDenied(HortusError):
    """An action was refused; carries the `Decision` so the caller can audit it."""

    def __init__(self, decision: Decision):
        self.decision = decision
        super().__init__(
            f"access denied: user {decision.user!r} may not {decision.action} "
            f"{decision.object!r}; missing: {decision.missing} "
            f"(policy {decision.policy_version[:12]})"
        )


@dataclass(frozen=True)
class Grant:
    """One grant: GROUP may ACTION objects matching PATTERN."""

    group: str
    action: str
    pattern: str

    @property
    def id(self) -> str:
        """Return the grant as text, e.g. "analysts: read gold.sales_daily"."""
        return f"{self.group}: {self.action} {self.pattern}"

    def matches(self, obj: str) -> bool:
        """Return whether the grant's pattern matches an object name."""
        return fnmatchcase(obj, self.pattern)


@dataclass(frozen=True)
class RowFilter:
    """A declarative row filter of one group: `column op values` on matching tables."""

    group: str
    tables: tuple[str, ...]
    column: str
    op: str
    values: tuple[Any, ...]

    def applies_to(self, table: str) -> bool:
        """Return whether the filter covers a table."""
        return any(fnmatchcase(table, p) for p in self.tables)

    def expr(self) -> pl.Expr:
        """Return the polars predicate (rows with a null in the column never pass)."""
        col = pl.col(self.column)
        pred = col.is_in(list(self.values)) if self.op == "in" else col == self.values[0]
        return pred.fill_null(False)

    def describe(self) -> str:
        """Return the filter as text, e.g. "region in [DACH, FRANCE]"."""
        if self.op == "in":
            return f"{self.column} in [{', '.join(map(str, self.values))}]"
        return f"{self.column} == {self.values[0]}"


@dataclass(frozen=True, eq=False)
class ReadPlan:
    """What a read by one user must apply: a row filter, then per-column masking.

    `select` holds one expression per column, in the requested order, each keeping
    the column's name and dtype.  `row_filter` is None when the user sees every row.
    Apply the filter before the select (the filter may use columns not selected).
    """

    user: str
    table: str
    columns: tuple[str, ...]
    row_filter: pl.Expr | None
    select: tuple[pl.Expr, ...]
    masked: tuple[str, ...]
    filters: tuple[str, ...]  # the clauses, as text, per granting group
    decision: Decision

    def apply(self, frame: _T) -> _T:
        """Apply the row filter and the masking to a (lazy) frame of the table."""
        if self.row_filter is not None:
            frame = frame.filter(self.row_filter)
        return frame.select(list(self.select))

    def describe(self) -> str:
        """Return one line for the audit log's detail: masked columns and row filter."""
        masked = ",".join(self.masked) or "-"
        rows = " OR ".join(self.filters) if self.filters else "all"
        return f"columns={len(self.columns)} masked={masked} rows={rows}"


def _mask_strings(s: pl.Series, key: bytes | None) -> pl.Series:
    """Keep existing tokens, tokenise the other values (one HMAC per distinct value)."""
    uniques = s.drop_nulls().unique()
    is_token = uniques.str.contains(TOKEN_PATTERN)
    if key is None:
        masked = uniques.zip_with(is_token, pl.Series([None] * len(uniques), dtype=pl.String))
    else:
        masked = pl.Series(
            [v if t else token(v, key) for v, t in zip(uniques, is_token, strict=True)],
            dtype=pl.String,
        )
    return s.replace_strict(uniques, masked, default=None, return_dtype=pl.String)


def mask_expr(name: str, *, string: bool, key: bytes | None) -> pl.Expr:
    """Return the masking expression of one column (same name and dtype).

    Strings keep existing tokens and tokenise the rest with `key` (null without a
    key); other types become null.

    Examples
    --------
    >>> df = pl.DataFrame({"n": [1], "e": ["tok_" + "0" * 24]})
    >>> masked = [mask_expr("n", string=False, key=None), mask_expr("e", string=True, key=None)]
    >>> df.select(masked).row(0)
    (None, 'tok_000000000000000000000000')
    """
    col = pl.col(name)
    if not string:
        return pl.when(pl.lit(False)).then(col).alias(name)  # all null, dtype kept
    return col.map_batches(lambda s: _mask_strings(s, key), return_dtype=pl.String).alias(name)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _unknown(spec: dict, allowed: Iterable[str], where: str) -> None:
    unknown = set(spec) - set(allowed)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {sorted(map(str, unknown))}; expected {sorted(allowed)}"
        )


@dataclass(frozen=True, eq=False)
class Policy:
    """Users, groups, grants, row filters and the restricted zone of one policy file.

    Examples
    --------
    >>> policy = Policy.load(Path("access_policy.yaml"))                 # doctest: +SKIP
    >>> print(policy.decide("paula", "approve", "churn").explain())  # doctest: +SKIP
    ALLOWED: paula approve churn
      groups of paula: approvers
      allowed by grant: approvers: approve *
      policy_version: 5f1c...
    """

    source: str
    version: str
    users: dict[str, tuple[str, ...]]
    groups: dict[str, str]  # group -> description
    grants: tuple[Grant, ...]
    row_filters: tuple[RowFilter, ...]
    restricted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    absent: bool = False  # no policy file: nobody has any right (see `for_project`)

    # ----------------------------------------------------------------- loading
    @classmethod
    def for_project(cls, path: Path) -> Policy:
        """Load the project's policy file, or return the deny-all policy if there is none.

        A project without `access_policy.yaml` is not open to everyone: every
        decision is a denial whose message says to create the file (fail closed).
        A file that exists but is malformed raises PolicyError.
        """
        path = Path(path)
        if path.is_file():
            return cls.load(path)
        return cls(
            source=str(path),
            version=ABSENT_VERSION,
            users={},
            groups={},
            grants=(),
            row_filters=(),
            absent=True,
        )

    @classmethod
    def load(cls, path: Path) -> Policy:
        """Load and check a policy file; its version is the sha256 of its bytes."""
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"no access policy at {path} (expected {POLICY_FILE})")
        return cls.from_bytes(path.read_bytes(), source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<inline>") -> Policy:
        """Parse a policy from the bytes of a policy file."""
        version = hashlib.sha256(data).hexdigest()
        try:
            doc = yaml.safe_load(data.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{source}: not valid UTF-8 YAML: {exc}") from exc
        doc = _mapping(doc, source)
        _unknown(doc, _TOP_KEYS, source)
        if doc.get("version") != 1:
            raise PolicyError(f"{source}: `version: 1` expected, got {doc.get('version')!r}")

        groups: dict[str, str] = {}
        grants: list[Grant] = []
        filters: list[RowFilter] = []
        for group, gspec in _mapping(doc.get("groups"), f"{source}: groups").items():
            where = f"{source}: group {group!r}"
            gspec = _mapping(gspec, where)
            _unknown(gspec, _GROUP_KEYS, where)
            groups[str(group)] = str(gspec.get("description", ""))
            for section, actions in _SECTIONS.items():
                sspec = _mapping(gspec.get(section), f"{where}, {section}")
                _unknown(sspec, actions, f"{where}, {section}")
                for action, patterns in sspec.items():
                    for p in _strings(patterns, f"{where}, {section}.{action}"):
                        grants.append(Grant(str(group), action, p))
            for i, fspec in enumerate(gspec.get("row_filters") or []):
                filters.append(_row_filter(str(group), fspec, f"{where}, row_filters[{i}]"))

        users: dict[str, tuple[str, ...]] = {}
        for user, member_of in _mapping(doc.get("users"), f"{source}: users").items():
            where = f"{source}: user {user!r}"
            member = _strings(member_of, where)
            undefined = [g for g in member if g not in groups]
            if undefined:
                raise PolicyError(f"{where}: undefined group(s) {undefined}")
            users[str(user)] = member

        restricted: dict[str, tuple[str, ...]] = {}
        zone = _mapping(doc.get("restricted_zone"), f"{source}: restricted_zone")
        _unknown(zone, RESTRICTED_LAYERS, f"{source}: restricted_zone")
        for layer in RESTRICTED_LAYERS:
            if layer not in zone:
                raise PolicyError(
                    f"{source}: restricted_zone must name the owner groups of {layer!r} "
                    f"(restricted layers: {', '.join(RESTRICTED_LAYERS)})"
                )
            owners = _strings(zone[layer], f"{source}: restricted_zone.{layer}")
            undefined = [g for g in owners if g not in groups]
            if undefined:
                raise PolicyError(
                    f"{source}: restricted_zone.{layer}: undefined group(s) {undefined}"
                )
            restricted[layer] = owners
        return cls(
            source=source,
            version=version,
            users=users,
            groups=groups,
            grants=tuple(grants),
            row_filters=tuple(filters),
            restricted=restricted,
        )

    # --------------------------------------------------------------- decisions
    def groups_of(self, user: str) -> tuple[str, ...]:
        """Return the user's groups (none for a user the policy does not list)."""
        return self.users.get(user, ())

    def _deny(self, user: str, action: str, obj: str, missing: str) -> Decision:
        return Decision(False, user, action, obj, None, missing, self.version, self.groups_of(user))

    def decide(self, user: str, action: str, obj: str) -> Decision:
        """Decide whether `user` may do `action` to `obj`, naming the grant or what is missing.

        Examples
        --------
        >>> policy.decide("alex", "read", "gold.sales_daily").grant   # doctest: +SKIP
        'analysts: read gold.sales_daily'
        """
        if action not in ACTIONS:
            raise PolicyError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        if self.absent:
            return self._deny(
                user,
                action,
                obj,
                f"an access policy: there is no {self.source}, so nobody has any right; "
                f"create {POLICY_FILE} at the project root (start from the demo policy of "
                "the Hortus repository and list your users and groups)",
            )
        groups = self.groups_of(user)
        if not groups:
            return self._deny(
                user, action, obj, f"user {user!r} is not in the policy {self.source} (no group)"
            )
        layer = obj.split(".", 1)[0] if ACTIONS[action] != "model" else ""
        if layer in self.restricted:
            owners = self.restricted[layer]
            if not set(groups) & set(owners):
                return self._deny(
                    user,
                    action,
                    obj,
                    f"membership of a restricted-zone owner group of {layer} "
                    f"({' or '.join(owners)}); {layer} holds raw personal data",
                )
        for g in self.grants:
            if g.group in groups and g.action == action and g.matches(obj):
                return Decision(True, user, action, obj, g.id, None, self.version, groups)
        would = sorted({g.group for g in self.grants if g.action == action and g.matches(obj)})
        hint = f"granted to: {', '.join(would)}" if would else "granted to no group"
        return self._deny(user, action, obj, f"a grant of {action} on {obj} ({hint})")

    def require(self, user: str, action: str, obj: str) -> Decision:
        """Return the allowing decision, or raise AccessDenied naming the missing grant."""
        decision = self.decide(user, action, obj)
        if not decision.allowed:
            raise AccessDenied(decision)
        return decision

    # -------------------------------------------------------------------- reads
    def read_plan(
        self,
        user: str,
        table: str,
        columns: Sequence[str] | None,
        contract: Contract,
        *,
        key: bytes | None = None,
    ) -> ReadPlan:
        """Return the row filter and column masking for `user` reading `table`.

        `columns` None means every contract column.  `key` is the PII key used to
        tokenise masked string values that are not tokens yet (None: they become
        null).  Raise AccessDenied (carrying the decision) if the user may not read.
        """
        if contract.full_name != table:
            raise HortusError(
                f"read_plan for {table!r} was given the contract of {contract.full_name!r}"
            )
        decision = self.require(user, "read", table)
        names = tuple(columns) if columns is not None else tuple(contract.column_names)
        known = {c.name: c for c in contract.columns}

        # Row filter: OR over granting groups of the AND of each group's filters.
        groups = self.groups_of(user)
        granting = [
            g
            for g in groups
            if any(x.group == g and x.action == "read" and x.matches(table) for x in self.grants)
        ]
        clauses: list[pl.Expr] = []
        texts: list[str] = []
        open_rows = False
        for g in granting:
            mine = [f for f in self.row_filters if f.group == g and f.applies_to(table)]
            if not mine:
                open_rows = True
                break
            if any(f.column not in known for f in mine):
                texts.append(f"{g}: none (filter column missing from {table})")
                clauses.append(pl.lit(False))
                continue
            exprs = [f.expr() for f in mine]
            clauses.append(pl.all_horizontal(exprs) if len(exprs) > 1 else exprs[0])
            texts.append(f"{g}: " + " AND ".join(f.describe() for f in mine))
        row_filter = None if open_rows else pl.any_horizontal(clauses)

        select: list[pl.Expr] = []
        masked: list[str] = []
        for name in names:
            col = known.get(name)
            protected = col is None or col.pii in PROTECTED_PII or col.sensitive
            if protected and not self.decide(user, "unmask", f"{table}.{name}").allowed:
                masked.append(name)
                string = col is not None and col.type == "string"
                select.append(mask_expr(name, string=string, key=key))
            else:
                select.append(pl.col(name))
        return ReadPlan(
            user=user,
            table=table,
            columns=names,
            row_filter=row_filter,
            select=tuple(select),
            masked=tuple(masked),
            filters=() if open_rows else tuple(texts),
            decision=decision,
        )

    # ---------------------------------------------------------------- checking
    def lint(self, tables: dict[str, Contract]) -> list[str]:
        """Return problems of the policy against the catalogued tables (empty if none).

        Flags table grants and row filters whose pattern matches no table, and row
        filters on a column a matched table lacks (that group then sees no rows).
        Pass `{c.full_name: c for c in catalog}`.
        """
        problems: list[str] = []
        for g in self.grants:
            if ACTIONS[g.action] == "table" and not any(g.matches(t) for t in tables):
                problems.append(f"{self.source}: grant {g.id!r} matches no catalogued table")
        for f in self.row_filters:
            matched = [t for t in tables if f.applies_to(t)]
            if not matched:
                problems.append(f"{self.source}: row filter of {f.group} matches no table")
            for t in matched:
                if f.column not in tables[t].column_names:
                    problems.append(
                        f"{self.source}: row filter of {f.group} uses column {f.column!r}, "
                        f"which {t} does not have (the group sees no rows of it)"
                    )
        return problems


def _row_filter(group: str, spec: Any, where: str) -> RowFilter:
    spec = _mapping(spec, where)
    _unknown(spec, _FILTER_KEYS, where)
    missing = sorted(_FILTER_KEYS - set(spec))
    if missing:
        raise PolicyError(f"{where}: missing key(s) {missing}")
    op = spec["op"]
    if op not in FILTER_OPS:
        raise PolicyError(f"{where}: op must be one of {FILTER_OPS}, got {op!r}")
    values = spec["values"]
    values = list(values) if isinstance(values, list) else [values]
    if not values or (op == "==" and len(values) != 1):
        raise PolicyError(f"{where}: op {op!r} needs {'one value' if op == '==' else 'values'}")
    if not isinstance(spec["column"], str) or not re.fullmatch(r"\w+", spec["column"]):
        raise PolicyError(f"{where}: column must be a column name, got {spec['column']!r}")
    return RowFilter(
        group=group,
        tables=_strings(spec["tables"], f"{where}, tables"),
        column=spec["column"],
        op=op,
        values=tuple(values),
    )


def check_four_eyes(approver: str, author: str, policy: Policy, *, model: str = "*") -> Decision:
    """Check that `approver` may approve a version authored by `author` (four eyes).

    Raise AccessDenied when the approver is the author, or holds no `approve`
    grant on `model`; return the allowing decision otherwise.
    """
    if approver == author:
        raise AccessDenied(
            policy._deny(
                approver,
                "approve",
                model,
                f"a second person: {approver!r} is the author of this version "
                "and may not approve it (four-eyes rule)",
            )
        )
    return policy.require(approver, "approve", model)
