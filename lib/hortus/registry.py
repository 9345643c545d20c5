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
`hortus.gate`).  Pointing the `champion` alias at a version (promote) needs
that version's latest gate run to have passed; otherwise `GateRequired` lists
every failed check with its value and threshold, and nothing is recorded.
Rolling back to an earlier champion needs no new gate: it passed one to
become champion.
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

from hortus.contracts import check_frame
from hortus.errors import ArtifactError, HortusError
from hortus.provenance import current_user, git_state
from hortus.tables import Lakehouse

VERSIONS = "ops.model_versions"
ALIASES = "ops.model_aliases"
GATES = "ops.gate_results"
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
class Registry:
    """Register model versions, move aliases, and load verified artifacts.

    Examples
    --------
    >>> reg = Registry(Lakehouse.open(), "recommender")                      # doctest: +SKIP
    >>> receipt = Receipt.collect(root, params=p, tables_read=lh.reads)      # doctest: +SKIP
    >>> mv = reg.register(path, sha256=h, signature=s, metrics=m, receipt=receipt)  # doctest: +SKIP
    >>> reg.promote(mv.version, alias="champion", reason="beats v2")         # doctest: +SKIP
    >>> model, signature = reg.load("champion")                              # doctest: +SKIP
    """

    def __init__(self, lakehouse: Lakehouse, name: str = "recommender"):
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
        """Return this model's alias events in replay order."""
        return (
            self._lh.scan_or_empty(ALIASES)
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
        `alias`, the alias is pointed at the version (action `register`).
        """
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
                "author": current_user(),
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

    def _move(self, alias: str, version: int | None, *, action: str, reason: str) -> bool:
        """Append one alias event; return False (and write nothing) if nothing changes."""
        if not _ALIAS.fullmatch(alias) or _VERSION_REF.fullmatch(alias):
            raise HortusError(
                f"alias {alias!r} is not valid: use lower-case letters, digits, '_' and '-', "
                "starting with a letter and not shaped like a version (v3)"
            )
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
            "actor": current_user(),
            "reason": reason,
        }
        inputs = {VERSIONS: self._lh.version(VERSIONS)} if self._lh.exists(VERSIONS) else {}
        self._append(ALIASES, row, inputs=inputs, note=f"{action} {self.name} {alias}")
        return True

    def promote(self, ref: str | int, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias at a version, recording the previous holder; return the version.

        Promoting the version the alias already points to records nothing.
        """
        mv = self.get(ref)
        if alias == CHAMPION and self.aliases().get(alias) != mv.version:
            self.require_gate(mv.version)
        self._move(alias, mv.version, action="promote", reason=reason)
        return self.get(mv.version)

    # ----------------------------------------------------------------- gates
    def record_gate(self, version: int, row: dict) -> None:
        """Append one gate run of `version` to ops.gate_results (see `hortus.gate`)."""
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

    def require_gate(self, ref: str | int) -> dict:
        """Return the latest gate run of a version if it passed; else raise GateRequired."""
        mv = self.get(ref)
        runs = self.gates(mv.version)
        if runs.height == 0:
            raise GateRequired(
                f"model {self.name} v{mv.version} has no gate result: run "
                f"`hortus gate {mv.version}` before promoting it to {CHAMPION}"
            )
        last = runs.row(-1, named=True)
        if not last["passed"]:
            failed = [c for c in json.loads(last["results"]) if not c["passed"]]
            lines = "".join(
                f"\n  - {c['name']}: value {c['value']}, threshold {c['threshold']}: {c['detail']}"
                for c in failed
            )
            raise GateRequired(
                f"model {self.name} v{mv.version} failed its gate (run {last['run_id']}, "
                f"{len(failed)} failed check(s)); not promoted to {CHAMPION}:{lines}",
                failed=failed,
            )
        return last

    def rollback(self, *, alias: str = CHAMPION, reason: str = "") -> ModelVersion:
        """Point an alias back at its previous holder (see the module docstring); return it."""
        stack = self._holders(alias)
        target = self._rollback_target(stack)
        if target is None:
            current = stack[-1] if stack else None
            where = f"it points to v{current}" if current else "it points to no version"
            raise HortusError(
                f"cannot roll back alias {alias!r} of model {self.name}: {where} and has "
                "no earlier holder to go back to"
            )
        self._move(alias, target, action="rollback", reason=reason)
        return self.get(target)

    def clear(self, alias: str, *, reason: str = "") -> None:
        """Make an alias point to no version (a later rollback restores its holder)."""
        if alias not in self.aliases():
            raise HortusError(f"alias {alias!r} of model {self.name} is not set")
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
        """Verify then load a version's artifact; return `hortus.modeling.load_model`'s result.

        That is `(pipeline, signature)`.  The hash is checked here before any
        bytes are deserialised, and passed on so the loader checks it too.
        """
        path = self.verify(ref)
        from hortus.modeling import load_model

        return load_model(path, expected_sha256=self.get(ref).artifact_sha256)
