"""The model registry: versions with build receipts, and aliases with a replayable history.

Both halves live in the operations plane (`lakehouse/ops/`, which `dvc repro`
never deletes):

- `ops.model_versions` has one row per registered version.  The artifact (and
  its `<stem>.signature.json` sibling) is copied to
  `lakehouse/ops/models/<name>/v<N>/`, a folder that is claimed atomically and
  never overwritten; its SHA-256 is checked after the copy and again before
  every load.
- `ops.model_aliases` is an append-only event log (promote, rollback, register,
  clear).  Each event records the version the alias points to afterwards and
  the one before, so replaying the log gives the current aliases and each
  alias' stack of holders, which is what rollback walks back through.

Rollback semantics
------------------
Replaying an alias' events builds a stack of holders: `promote`/`register`
push the new version (pointing an alias at its current holder is a no-op and
records nothing), `clear` pushes "nothing".  `rollback` pops the current
holder, and with it any entries under it that are "nothing" or the same
version, and points the alias at the version now on top; the event records
that version and the one left.  A second rollback therefore goes one further
back, and a version rolled back away from is gone from the stack, so a later
rollback never returns to it (promote 1, 2, 3; rollback -> 2; promote 4;
rollback -> 2; rollback -> 1; rollback -> error).  Rolling back a cleared
alias restores its last holder.  With no earlier version, rollback is an error.

Promotion gate
--------------
`ops.gate_results` holds every gate run (`hortus gate VERSION`, see
`hortus.checks.gate`).  Pointing the `champion` alias at a version (promote) needs
that version's latest gate run to have passed; otherwise `GateRequired` lists
every failed check with its value and threshold, and nothing is recorded.
Rolling back to an earlier champion needs no new gate: it passed one to
become champion.

Four eyes and grants
--------------------
The registry acts as its Lakehouse's user (`Lakehouse.user`): that user is the
author of the versions it registers and the actor of the alias events it
records.  Each guarded action is checked against the access policy and audited
in ops.audit_log through `Lakehouse.authorize` (allowed or denied; the object
is the model name):

- `register` needs the `register` grant.  An alias set at registration
  (`register(..., alias="challenger")`, as the pipeline does) is part of the
  registration and needs nothing more, except `champion`, which is never set
  at registration: it needs the checks of `promote`.
- `approve` needs the `approve` grant and an approver who is not the version's
  author (`hortus.governance.access.check_four_eyes`), else AccessDenied naming approver,
  author and version.  The approval is appended to `ops.model_approvals`; a
  second approval of the same version by the same person records nothing.
- `promote` needs the `promote` grant (else AccessDenied).  Pointing `champion`
  at a version also needs its latest gate run passed (else `GateRequired`) and
  an approval by an approver who is not its author and who still holds the
  `approve` grant under the current policy (else `ApprovalRequired`).  The
  promote event records the approvers (`approved_by`) and the gate run
  (`gate_run_id`) it relied on.  Other aliases (challenger, ...) need the
  grant only: they route no production traffic by convention.
- `rollback` and `clear` need the `promote` grant and no new approval or gate:
  a rollback returns to a version that passed both to become champion.
- `promote_allowed` answers whether `promote` would succeed, and what is
  missing, without recording anything but the reads it makes.

A refused attempt writes nothing to the registry tables and is audited as a
denied `promote` or `approve` whose detail says what was missing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from hortus.errors import ArtifactError, HortusError
from hortus.governance.access import AccessDenied, Decision, check_four_eyes
from hortus.lakehouse.contracts import check_frame
from hortus.lakehouse.tables import Lakehouse
from hortus.provenance import git_state

VERSIONS = "ops.model_versions"
ALIASES = "ops.model_aliases"
GATES = "ops.gate_results"
APPROVALS = "ops.model_approvals"
CHAMPION = "champion"
CHALLENGER = "challenger"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]*")
_VERSION_REF = re.compile(r"[vV]?(\d+)")


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


class GateRequired(HortusError):
    """A promotion to champion without a passed gate; `failed` lists the failed checks."""

    def __init__(self, message: str, failed: list[dict] | None = None):
        super().__init__(message)
        self.failed = failed or []


class ApprovalRequired(HortusError):
    """A promotion to champion without an approval by an approver who is not the author."""


@dataclass(frozen=True)
class Approval:
    """One four-eyes approval of a model version (a row of ops.model_approvals).

    `recorded` is False when the approver had already approved the version and
    nothing new was written (the fields are then those of the earlier approval).
    """

    name: str
    version: int
    approver: str
    author: str
    approved_at: datetime
    reason: str
    policy_version: str
    recorded: bool = True

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (approved_at as ISO 8601)."""
        d = asdict(self)
        d["approved_at"] = self.approved_at.isoformat()
        return d


_APPROVAL_FIELDS = tuple(f for f in Approval.__dataclass_fields__ if f != "recorded")


@dataclass(frozen=True)
class _Readiness:
    """What promoting a version to champion relies on, and what is missing."""

    gate: dict | None  # the latest gate run, if it passed
    gate_problem: str | None
    failed: list[dict]
    approvers: tuple[str, ...]  # valid approvers, in approval order
    approval_problem: str | None


# ------------------------------------------------------------------- receipt
@dataclass(frozen=True)
class Receipt:
    """The build receipt of a model version: what it takes to rebuild it.

    Examples
    --------
    >>> r = Receipt.collect(root, params={"C": 1}, tables_read={"gold.train": 3})  # doctest: +SKIP
    >>> r.git_commit, r.data_md5                                           # doctest: +SKIP
    ('1f3c...', 'f2132778b7357b1bf2e2d054b81696a0.dir')
    """

    git_commit: str
    git_dirty: bool
    dvc_lock_sha256: str | None
    data_md5: str | None
    uv_lock_sha256: str | None
    params: dict
    tables_read: dict[str, int]
    content_hashes: dict[str, str] | None = None

    @classmethod
    def collect(
        cls,
        root: Path,
        *,
        params: dict,
        tables_read: dict[str, int],
        content_hashes: dict[str, str] | None = None,
    ) -> Receipt:
        """Collect the receipt of a build in the project at `root`.

        Git state is read fresh (not the per-process cache of table writes): a
        receipt must describe the tree as it is now.  Lock-file digests are
        None when the file is absent; `data_md5` is the md5 that data.dvc pins
        for `data`, or None without data.dvc.
        """
        root = Path(root)
        sha, dirty = git_state.__wrapped__(root)

        def digest(name: str) -> str | None:
            path = root / name
            return sha256_file(path) if path.is_file() else None

        return cls(
            git_commit=sha,
            git_dirty=dirty,
            dvc_lock_sha256=digest("dvc.lock"),
            data_md5=_data_md5(root / "data.dvc"),
            uv_lock_sha256=digest("uv.lock"),
            params=dict(params),
            tables_read={str(k): int(v) for k, v in tables_read.items()},
            content_hashes=dict(content_hashes) if content_hashes else None,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Receipt:
        """Rebuild a receipt from `to_dict()` output (e.g. a registry row)."""
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return asdict(self)


def _data_md5(dvc_file: Path) -> str | None:
    if not dvc_file.is_file():
        return None
    try:
        doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise HortusError(f"{dvc_file}: not valid YAML: {exc}") from None
    outs = doc.get("outs") if isinstance(doc, dict) else None
    for out in outs or []:
        if isinstance(out, dict) and out.get("path") == "data":
            return out.get("md5")
    return None


# -------------------------------------------------------------- model version
@dataclass(frozen=True)
class ModelVersion:
    """One registered model version (a row of ops.model_versions plus its current aliases)."""

    version: int
    name: str
    created_at: datetime
    author: str
    artifact_path: str  # relative to the project root (absolute if the lakehouse is elsewhere)
    artifact_sha256: str
    signature: dict
    params: dict
    metrics: dict
    receipt: dict
    aliases: tuple[str, ...]
    notes: str
    spec: dict | None = None

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict (created_at as ISO 8601, aliases as a list)."""
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        d["aliases"] = list(self.aliases)
        return d

    @classmethod
    def _from_row(cls, row: dict, aliases: tuple[str, ...]) -> ModelVersion:
        return cls(
            version=row["version"],
            name=row["name"],
            created_at=row["created_at"],
            author=row["author"],
            artifact_path=row["artifact_path"],
            artifact_sha256=row["artifact_sha256"],
            signature=json.loads(row["signature"]),
            params=json.loads(row["params"]),
            metrics=json.loads(row["metrics"]),
            receipt=json.loads(row["receipt"]),
            aliases=aliases,
            notes=row["notes"],
            spec=json.loads(row["spec"]) if row.get("spec") else None,
        )


# ------------------------------------------------------------------ registry
def model_names(lakehouse: Lakehouse) -> list[str]:
    """Return the names of every model with a registered version, sorted.

    Reads ops.model_versions as the Lakehouse's user (an empty list before the first
    registration).
    """
    return (
        lakehouse.scan_or_empty(VERSIONS)
        .select(pl.col("name").unique())
        .collect()["name"]
        .sort()
        .to_list()
    )


def default_model(root: Path) -> str | None:
    """Return the default model of the project at `root` (its hortus.yaml), or None.

    The definition is found as the catalog finds it (`Project.load`: `root`, else the
    project of the working directory); None when there is none or it is invalid.
    """
    from hortus.project.definition import Project, ProjectError

    try:
        return Project.load(Path(root)).default_model
    except ProjectError:
        return None


def model_flag(root: Path, name: str) -> str:
    """Return " --model NAME" for printed commands, or "" when NAME is the project's default.

    Examples
    --------
    >>> model_flag(Path("/nonexistent"), "a-model-no-project-declares")
    ' --model a-model-no-project-declares'
    """
    return "" if name == default_model(root) else f" --model {name}"


class Registry:
    """Register model versions, move aliases, and load verified artifacts.

    Examples
    --------
    >>> reg = Registry(Lakehouse.open(), "churn")                            # doctest: +SKIP
    >>> receipt = Receipt.collect(root, params=p, tables_read=lh.reads)      # doctest: +SKIP
    >>> mv = reg.register(path, sha256=h, signature=s, metrics=m, receipt=receipt)  # doctest: +SKIP
    >>> reg.promote(mv.version, alias="champion", reason="beats v2")         # doctest: +SKIP
    >>> model, signature = reg.load("champion")                              # doctest: +SKIP
    """

    def __init__(self, lakehouse: Lakehouse, name: str):
        if not _NAME.fullmatch(name):
            raise HortusError(
                f"model name {name!r} is not valid: use letters, digits, '.', '_' and '-'"
            )
        # A private view: the registry's own reads must not leak into the
        # lineage of the caller's later writes.
        self._lh = replace(lakehouse, reads={})
        self.name = name

    # ------------------------------------------------------------ locations
    @property
    def root(self) -> Path:
        """Return the folder holding this model's stored artifacts."""
        return self._lh.paths.layer("ops") / "models" / self.name

    def _stored(self, relpath: str) -> Path:
        return self._lh.paths.root / relpath  # an absolute relpath stays absolute

    # ---------------------------------------------------------------- reads
    def _versions_frame(self) -> pl.DataFrame:
        return (
            self._lh.scan_or_empty(VERSIONS)
            .filter(pl.col("name") == self.name)
            .sort("version")
            .collect()
        )

    def _events(self) -> pl.DataFrame:
        """Return this model's alias events in replay order.

        Columns added to the contract later (approved_by, gate_run_id) are null
        in events written before them.
        """
        events = self._lh.scan_or_empty(ALIASES)
        have = set(events.collect_schema().names())
        schema = self._lh.catalog.get(ALIASES).schema
        return (
            events.with_columns(
                pl.lit(None, dtype).alias(c) for c, dtype in schema.items() if c not in have
            )
            .filter(pl.col("name") == self.name)
            .sort("seq", "at")
            .collect()
        )

    def aliases(self) -> dict[str, int]:
        """Return the current alias -> version mapping (cleared aliases are left out)."""
        current = (
            self._events()
            .group_by("alias")
            .agg(pl.col("version").last())
            .drop_nulls("version")
            .sort("alias")
        )
        return dict(zip(current["alias"].to_list(), current["version"].to_list(), strict=True))

    def history(self, alias: str | None = None) -> pl.DataFrame:
        """Return the alias event log of this model (optionally of one alias), oldest first."""
        ev = self._events()
        return ev.filter(pl.col("alias") == alias) if alias else ev

    def versions(self) -> list[ModelVersion]:
        """Return every registered version of this model, ordered by version."""
        by_version: dict[int, list[str]] = {}
        for alias, v in self.aliases().items():
            by_version.setdefault(v, []).append(alias)
        return [
            ModelVersion._from_row(r, tuple(by_version.get(r["version"], ())))
            for r in self._versions_frame().iter_rows(named=True)
        ]

    def get(self, ref: str | int) -> ModelVersion:
        """Return a version by number (3, "3", "v3") or by alias ("champion")."""
        frame = self._versions_frame()
        version = self._resolve(ref, frame)
        row = frame.filter(pl.col("version") == version).row(0, named=True)
        current = self.aliases()
        return ModelVersion._from_row(row, tuple(a for a, v in current.items() if v == version))

    def _resolve(self, ref: str | int, frame: pl.DataFrame) -> int:
        known = frame["version"].to_list()
        known_txt = ", ".join(f"v{v}" for v in known) or "none registered yet"
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise HortusError(f"model version reference must be a number or alias, got {ref!r}")
        m = _VERSION_REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
        if isinstance(ref, int) or m:
            version = ref if isinstance(ref, int) else int(m.group(1))
            if version not in known:
                raise HortusError(
                    f"model {self.name} has no version {version}; known versions: {known_txt}"
                )
            return version
        alias = ref.strip()
        current = self.aliases()
        if alias in current:
            return current[alias]
        ev = self.history(alias)
        if ev.height:
            last = ev.row(-1, named=True)
            why = f"was cleared at {last['at']:%Y-%m-%d %H:%M:%S} UTC by {last['actor']}"
        else:
            why = "has never been set"
        others = ", ".join(f"{a}=v{v}" for a, v in current.items()) or "none"
        raise HortusError(
            f"alias {alias!r} of model {self.name} points to no version: it {why}; "
            f"current aliases: {others}; known versions: {known_txt}"
        )

    # ------------------------------------------------------------- register
    def register(
        self,
        artifact: Path,
        *,
        sha256: str,
        signature: dict,
        metrics: dict,
        receipt: Receipt,
        notes: str = "",
        alias: str | None = None,
        spec: dict | None = None,
    ) -> ModelVersion:
        """Store an artifact as the next version and record it with its receipt.

        `spec` is the training `ModelSpec.to_dict()` (target, features, time,
        group, segments, k), kept so gates and reports can evaluate the version.

        The artifact (and its `<stem>.signature.json` sibling, if present) is
        copied to `lakehouse/ops/models/<name>/v<N>/` and the copy's SHA-256
        must equal `sha256`, else ArtifactError and nothing is written.
        Registering the same bytes from the same build (git commit, data md5,
        params) again returns the existing version and writes nothing.  With
        `alias`, the alias is pointed at the version (action `register`); that
        is part of the registration, except for `champion`, which is refused
        (it needs a gate and a four-eyes approval: `promote` it later).

        Needs the `register` grant on the model (audited); the acting user
        (`Lakehouse.user`) is recorded as the version's author.
        """
        if alias == CHAMPION:
            raise HortusError(
                f"register(alias={CHAMPION!r}) is refused for model {self.name}: a new "
                f"version becomes {CHAMPION} only through promote, after a passed gate and "
                "an approval by an approver who is not its author; register it without "
                "the alias (or as challenger)"
            )
        if alias is not None:
            self._check_alias(alias)
        artifact = Path(artifact)
        if not artifact.is_file():
            raise ArtifactError(f"model artifact {artifact} not found")
        have = sha256_file(artifact)
        if have != sha256:
            raise ArtifactError(
                f"model artifact {artifact} has sha256 {have}, expected {sha256}; "
                "nothing registered"
            )
        params_json = _dumps(receipt.params)
        self._lh.authorize(
            "register", self.name, detail=f"artifact sha256={sha256[:12]} alias={alias or '-'}"
        )
        frame = self._versions_frame()
        same = frame.filter(
            (pl.col("artifact_sha256") == sha256)
            & (pl.col("git_commit") == receipt.git_commit)
            & pl.col("data_md5").eq_missing(pl.lit(receipt.data_md5, pl.String))
            & (pl.col("params") == params_json)
        )
        if same.height:
            version = int(same["version"][0])
        else:
            version = self._store(artifact, frame, sha256, signature, metrics, receipt, notes, spec)
        if alias is not None:
            self._move(alias, version, action="register", reason=notes)
        return self.get(version)

    def _store(
        self,
        artifact: Path,
        frame: pl.DataFrame,
        sha256: str,
        signature: dict,
        metrics: dict,
        receipt: Receipt,
        notes: str,
        spec: dict | None = None,
    ) -> int:
        version = int(frame["version"].max() or 0) + 1
        self.root.mkdir(parents=True, exist_ok=True)
        while True:  # claim v<N> atomically; a folder that exists is never reused
            folder = self.root / f"v{version}"
            try:
                folder.mkdir()
                break
            except FileExistsError:
                version += 1
        try:
            stored = folder / artifact.name
            shutil.copyfile(artifact, stored)
            copied = sha256_file(stored)
            if copied != sha256:
                raise ArtifactError(
                    f"copy of model artifact {artifact} to {stored} has sha256 {copied}, "
                    f"expected {sha256}; nothing registered"
                )
            sig_file = artifact.with_name(f"{artifact.stem}.signature.json")
            if sig_file.is_file():
                shutil.copyfile(sig_file, folder / sig_file.name)
            for f in folder.iterdir():
                f.chmod(0o444)  # stored artifacts are read-only
            try:
                relpath = stored.relative_to(self._lh.paths.root).as_posix()
            except ValueError:
                relpath = str(stored)
            r = receipt.to_dict()
            row = {
                "version": version,
                "name": self.name,
                "created_at": datetime.now(UTC),
                "author": self._lh.user,
                "artifact_path": relpath,
                "artifact_sha256": sha256,
                "signature": _dumps(signature),
                "params": _dumps(receipt.params),
                "metrics": _dumps(metrics),
                "receipt": _dumps(r),
                "git_commit": receipt.git_commit,
                "git_dirty": bool(receipt.git_dirty),
                "data_md5": receipt.data_md5,
                "dvc_lock_sha256": receipt.dvc_lock_sha256,
                "uv_lock_sha256": receipt.uv_lock_sha256,
                "tables_read": _dumps(receipt.tables_read),
                "notes": notes,
                "spec": _dumps(spec) if spec is not None else None,
            }
            self._append(
                VERSIONS, row, inputs=receipt.tables_read, note=f"register {self.name} v{version}"
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return version

    def _append(self, table: str, row: dict, *, inputs: dict[str, int], note: str) -> None:
        contract = self._lh.catalog.get(table)
        df = pl.DataFrame([row], schema=contract.schema)
        bad = check_frame(df, contract)
        if bad.height:
            raise HortusError(f"{table}: refused row: {'; '.join(bad['message'].to_list())}")
        self._lh.write(table, df, mode="append", inputs=inputs, note=note)

    # -------------------------------------------------------------- aliases
    def _holders(self, alias: str) -> list[int | None]:
        """Replay one alias' events into its stack of holders (None = cleared)."""
        stack: list[int | None] = []
        for action, version in self.history(alias).select("action", "version").iter_rows():
            if action == "rollback":
                while stack and stack[-1] != version:
                    stack.pop()
                if not stack:  # only if the log was edited by hand: restart from the target
                    stack.append(version)
            elif not stack or stack[-1] != version:
                stack.append(version)
        return stack

    @staticmethod
    def _rollback_target(stack: list[int | None]) -> int | None:
        """Return the holder under the current one, skipping cleared and equal entries."""
        current = stack[-1] if stack else None
        below = [v for v in stack[:-1] if v is not None and v != current]
        return below[-1] if below else None

    @staticmethod
    def _check_alias(alias: str) -> None:
        if not _ALIAS.fullmatch(alias) or _VERSION_REF.fullmatch(alias):
            raise HortusError(
                f"alias {alias!r} is not valid: use lower-case letters, digits, '_' and '-', "
                "starting with a letter and not shaped like a version (v3)"
            )

    def _move(
        self,
        alias: str,
        version: int | None,
        *,
        action: str,
        reason: str,
        approved_by: str | None = None,
        gate_run_id: str | None = None,
    ) -> bool:
        """Append one alias event; return False (and write nothing) if nothing changes."""
        self._check_alias(alias)
        events = self._events()
        previous = self.aliases().get(alias)
        if previous == version:
            return False
        row = {
            "seq": int(events["seq"].max() or 0) + 1,
            "name": self.name,
            "at": datetime.now(UTC),
            "alias": alias,
            "version": version,
            "previous_version": previous,
            "action": action,
            "actor": self._lh.user,
            "reason": reason,
            "approved_by": approved_by,
            "gate_run_id": gate_run_id,
        }
        inputs = {VERSIONS: self._lh.version(VERSIONS)} if self._lh.exists(VERSIONS) else {}
        self._append(ALIASES, row, inputs=inputs, note=f"{action} {self.name} {alias}")
        return True

    # ------------------------------------------------------------ four eyes
    def _decide(self, action: str, user: str | None = None) -> Decision:
        """Return the policy's decision on `action` for a user (default: acting); no audit."""
        assert self._lh.policy is not None
        return self._lh.policy.decide(user or self._lh.user, action, self.name)

    def _holders_of(self, action: str, *, but: str | None = None) -> list[str]:
        """Return the policy's users holding a model grant (for hints), except `but`."""
        assert self._lh.policy is not None
        users = sorted(self._lh.policy.users)
        return [u for u in users if u != but and self._decide(action, u).allowed]

    def _deny(self, decision: Decision, missing: str) -> AccessDenied:
        """Audit a refused attempt (written before returning) and return the error to raise."""
        refused = replace(decision, allowed=False, grant=None, missing=missing)
        return self._lh._refuse(refused)

    def _flag(self) -> str:
        """Return the `--model NAME` a printed command needs (none for the default model)."""
        return model_flag(self._lh.paths.root, self.name)

    def approvals(self, ref: str | int | None = None) -> pl.DataFrame:
        """Return the approvals of this model (or of one version), oldest first."""
        frame = self._lh.scan_or_empty(APPROVALS).filter(pl.col("name") == self.name)
        if ref is not None:
            frame = frame.filter(pl.col("version") == self.get(ref).version)
        return frame.sort("approved_at").collect()

    def approve(self, ref: str | int, *, reason: str = "") -> Approval:
        """Approve a version as the acting user (four eyes); return the approval.

        The acting user (`Lakehouse.user`) must hold the `approve` grant on the
        model and must not be the version's author, else AccessDenied naming
        approver, author and version (audited as a denied `approve`).  The
        approval is appended to ops.model_approvals and audited; approving a
        version one has already approved records nothing new (`recorded` False).

        Examples
        --------
        >>> reg = Registry(Lakehouse.open(user="paula"), "churn")  # doctest: +SKIP
        >>> reg.approve(3, reason="report read").author        # doctest: +SKIP
        'mia'
        """
        mv = self.get(ref)
        user = self._lh.user
        assert self._lh.policy is not None
        try:
            check_four_eyes(user, mv.author, self._lh.policy, model=self.name)
        except AccessDenied as exc:
            who = f"model {self.name} v{mv.version}, author {mv.author!r}, approver {user!r}"
            raise self._deny(exc.decision, f"{exc.decision.missing} ({who})") from None
        earlier = self.approvals(mv.version).filter(pl.col("approver") == user)
        if earlier.height:
            self._lh.authorize(
                "approve",
                self.name,
                detail=f"v{mv.version} author={mv.author} already approved; nothing recorded",
            )
            row = earlier.row(0, named=True)
            return Approval(**{k: row[k] for k in _APPROVAL_FIELDS}, recorded=False)
        decision = self._lh.authorize(
            "approve", self.name, detail=f"v{mv.version} author={mv.author}"
        )
        row = {
            "name": self.name,
            "version": mv.version,
            "approver": user,
            "author": mv.author,
            "approved_at": datetime.now(UTC),
            "reason": reason,
            "policy_version": decision.policy_version,
        }
        inputs = {VERSIONS: self._lh.version(VERSIONS)}
        self._append(APPROVALS, row, inputs=inputs, note=f"approve {self.name} v{mv.version}")
        return Approval(**row)

    def _approval_status(self, mv: ModelVersion) -> tuple[tuple[str, ...], str | None]:
        """Return the approvers that count for a version, or what is missing."""
        approvers = self.approvals(mv.version)["approver"].unique(maintain_order=True).to_list()
        valid = tuple(a for a in approvers if a != mv.author and self._decide("approve", a).allowed)
        if valid:
            return valid, None
        eligible = ", ".join(self._holders_of("approve", but=mv.author)) or "none in the policy"
        v, flag = mv.version, self._flag()
        problem = (
            f"model {self.name} v{v} needs approval by an approver who is not {mv.author}: "
            f"`HORTUS_USER=<approver> hortus models approve {v}{flag}`, then "
            f"`hortus models promote {v}{flag}` (approvers: {eligible})"
        )
        ignored = [
            f"{a} (the author)" if a == mv.author else f"{a} (no approve grant now)"
            for a in approvers
        ]
        if ignored:
            problem += f"; approvals not counted: {', '.join(ignored)}"
        return (), problem

    def _readiness(self, mv: ModelVersion) -> _Readiness:
        gate, gate_problem, failed = self._gate_status(mv.version)
        approvers, approval_problem = self._approval_status(mv)
        return _Readiness(gate, gate_problem, failed, approvers, approval_problem)

    def _grant_problem(self, decision: Decision) -> str:
        holders = ", ".join(self._holders_of("promote")) or "nobody in the policy"
        return (
            f"user {self._lh.user!r} may not promote model {self.name} "
            f"(missing: {decision.missing}; users who may: {holders})"
        )

    def promote_allowed(self, ref: str | int, alias: str = CHAMPION) -> tuple[bool, str]:
        """Return whether the acting user may `promote` a version to an alias now, and why.

        Checks what `promote` checks (the `promote` grant; for `champion` also a
        passed gate and a four-eyes approval) without moving the alias or
        auditing a decision (the reads it makes are audited as reads).  The
        message names every missing piece with the command that supplies it,
        e.g. "needs approval by an approver who is not pipeline:
        `HORTUS_USER=<approver> hortus models approve 3`, then `hortus models
        promote 3`".

        Examples
        --------
        >>> ok, why = registry.promote_allowed(3)            # doctest: +SKIP
        >>> ok or print(why)                                   # doctest: +SKIP
        """
        mv = self.get(ref)
        self._check_alias(alias)
        target = f"model {self.name} v{mv.version}"
        current = self.aliases().get(alias)
        decision = self._decide("promote")
        missing = [] if decision.allowed else [self._grant_problem(decision)]
        ready = None
        if alias == CHAMPION and current != mv.version:
            ready = self._readiness(mv)
            missing += [p for p in (ready.gate_problem, ready.approval_problem) if p]
        if missing:
            return False, f"{target} cannot be promoted to {alias} yet: " + "; ".join(missing)
        if current == mv.version:
            return True, f"{alias} of model {self.name} already points to v{mv.version}"
        if ready is not None and ready.gate is not None:
            return True, (
                f"{target} may be promoted to {alias} by {self._lh.user}: gate run "
                f"{ready.gate['run_id']} passed, approved by {', '.join(ready.approvers)}"
            )
        return True, f"{target} may be pointed at {alias} by {self._lh.user} (promote grant)"

    def _refuse_champion(
        self, mv: ModelVersion, ready: _Readiness, decision: Decision, move: str
    ) -> HortusError:
        """Audit a refused promotion to champion; return GateRequired or ApprovalRequired."""
        missing = []
        if ready.gate_problem:
            failed = ",".join(c["name"] for c in ready.failed)
            why = f"failed: {failed}" if failed else "no gate result"
            missing.append(f"a passed gate of v{mv.version} ({why})")
        if ready.approval_problem:
            missing.append(f"an approval of v{mv.version} by an approver who is not {mv.author}")
        self._deny(decision, f"{'; '.join(missing)} (to move {move})")  # audited; not raised
        if ready.gate_problem:
            text = ready.gate_problem
            if ready.approval_problem:
                text += f"\n{ready.approval_problem}"
            return GateRequired(text, failed=ready.failed)
        return ApprovalRequired(f"{ready.approval_problem}; not promoted to {CHAMPION}")

    def promote(self, ref: str | int, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias at a version, recording the previous holder; return the version.

        Needs the `promote` grant (else AccessDenied); `champion` also needs the
        version's latest gate run passed (else GateRequired) and an approval by
        an approver who is not its author (else ApprovalRequired).  The event
        records the approvers and gate run relied on; every attempt is audited.
        Promoting the version the alias already points to records nothing.
        """
        mv = self.get(ref)
        self._check_alias(alias)
        current = self.aliases().get(alias)
        move = f"{alias} {'v' + str(current) if current else 'unset'} -> v{mv.version}"
        decision = self._decide("promote")
        if not decision.allowed:
            raise self._deny(decision, f"{decision.missing} (to move {move})")
        if current == mv.version:
            self._lh.authorize("promote", self.name, detail=f"{move}: nothing recorded")
            return self.get(mv.version)
        approved_by = gate_run_id = None
        if alias == CHAMPION:
            ready = self._readiness(mv)
            if ready.gate_problem or ready.approval_problem:
                raise self._refuse_champion(mv, ready, decision, move)
            assert ready.gate is not None
            approved_by, gate_run_id = ",".join(ready.approvers), ready.gate["run_id"]
        detail = move
        if approved_by:
            detail += f" approved_by={approved_by} gate_run={gate_run_id}"
        self._lh.authorize("promote", self.name, detail=detail)
        self._move(
            alias,
            mv.version,
            action="promote",
            reason=reason,
            approved_by=approved_by,
            gate_run_id=gate_run_id,
        )
        return self.get(mv.version)

    # ----------------------------------------------------------------- gates
    def record_gate(self, version: int, row: dict) -> None:
        """Append one gate run of `version` to ops.gate_results (see `hortus.checks.gate`)."""
        mv = self.get(version)
        row = dict(row) | {"name": self.name, "version": mv.version}
        inputs = {VERSIONS: self._lh.version(VERSIONS)}
        self._append(GATES, row, inputs=inputs, note=f"gate {self.name} v{mv.version}")

    def gates(self, ref: str | int | None = None) -> pl.DataFrame:
        """Return the gate runs of this model (or of one version), oldest first."""
        frame = self._lh.scan_or_empty(GATES).filter(pl.col("name") == self.name)
        if ref is not None:
            frame = frame.filter(pl.col("version") == self.get(ref).version)
        return frame.sort("finished_at").collect()

    def newest_gated(self) -> int | None:
        """Return the newest version whose latest gate run passed (None if no version did).

        What scores and reports fall back to before any champion exists.
        """
        passed = (
            self.gates()
            .group_by("version")
            .agg(pl.col("passed").last())  # gates() is oldest first: last = latest run
            .filter(pl.col("passed"))
        )
        return int(passed["version"].max()) if passed.height else None

    def _gate_status(self, version: int) -> tuple[dict | None, str | None, list[dict]]:
        """Return (latest run if it passed, what is wrong otherwise, its failed checks)."""
        runs = self.gates(version)
        if runs.height == 0:
            return (
                None,
                (
                    f"model {self.name} v{version} has no gate result: run "
                    f"`hortus gate {version}` before promoting it to {CHAMPION}"
                ),
                [],
            )
        last = runs.row(-1, named=True)
        if last["passed"]:
            return last, None, []
        failed = [c for c in json.loads(last["results"]) if not c["passed"]]
        lines = "".join(
            f"\n  - {c['name']}: value {c['value']}, threshold {c['threshold']}: {c['detail']}"
            for c in failed
        )
        return (
            None,
            (
                f"model {self.name} v{version} failed its gate (run {last['run_id']}, "
                f"{len(failed)} failed check(s)); not promoted to {CHAMPION}:{lines}"
            ),
            failed,
        )

    def require_gate(self, ref: str | int) -> dict:
        """Return the latest gate run of a version if it passed; else raise GateRequired."""
        mv = self.get(ref)
        last, problem, failed = self._gate_status(mv.version)
        if problem is not None:
            raise GateRequired(problem, failed=failed)
        assert last is not None
        return last

    def _require_promote(self, what: str) -> Decision:
        """Refuse (audited) unless the acting user holds the promote grant."""
        decision = self._decide("promote")
        if not decision.allowed:
            raise self._deny(decision, f"{decision.missing} (to {what})")
        return decision

    def rollback(self, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias back at its previous holder (see the module docstring); return it.

        Needs the `promote` grant (audited), but no new gate or approval.
        """
        self._check_alias(alias)
        self._require_promote(f"roll back {alias} of model {self.name}")
        stack = self._holders(alias)
        target = self._rollback_target(stack)
        current = stack[-1] if stack else None
        if target is None:
            where = f"it points to v{current}" if current else "it points to no version"
            raise HortusError(
                f"cannot roll back alias {alias!r} of model {self.name}: {where} and has "
                "no earlier holder to go back to"
            )
        was = f"v{current}" if current else "unset"
        self._lh.authorize("promote", self.name, detail=f"rollback {alias} {was} -> v{target}")
        self._move(alias, target, action="rollback", reason=reason)
        return self.get(target)

    def clear(self, alias: str, *, reason: str = "") -> None:
        """Make an alias point to no version (a later rollback restores its holder).

        Needs the `promote` grant (audited).
        """
        self._check_alias(alias)
        self._require_promote(f"clear {alias} of model {self.name}")
        current = self.aliases().get(alias)
        if current is None:
            raise HortusError(f"alias {alias!r} of model {self.name} is not set")
        self._lh.authorize("promote", self.name, detail=f"clear {alias} v{current} -> unset")
        self._move(alias, None, action="clear", reason=reason)

    # ------------------------------------------------------------ artifacts
    def artifact_path(self, ref: str | int) -> Path:
        """Return the absolute path of a version's stored artifact."""
        return self._stored(self.get(ref).artifact_path)

    def verify(self, ref: str | int) -> Path:
        """Return the stored artifact's path if its SHA-256 matches the registry, else raise."""
        mv = self.get(ref)
        path = self._stored(mv.artifact_path)
        if not path.is_file():
            raise ArtifactError(
                f"artifact of model {self.name} v{mv.version} is missing: {path} not found"
            )
        actual = sha256_file(path)
        if actual != mv.artifact_sha256:
            raise ArtifactError(
                f"artifact {path} of model {self.name} v{mv.version} has been altered: "
                f"expected sha256 {mv.artifact_sha256}, actual {actual}; refusing to load it"
            )
        return path

    def load(self, ref: str | int) -> tuple[Any, Any]:
        """Verify then load a version's artifact; return `hortus.models.load_model`'s result.

        That is `(pipeline, signature)`.  The hash is checked here before any
        bytes are deserialised, and passed on so the loader checks it too.
        """
        path = self.verify(ref)
        from hortus.models.modeling import load_model

        return load_model(path, expected_sha256=self.get(ref).artifact_sha256)
