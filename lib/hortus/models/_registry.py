"""The `Registry` class: register versions, resolve references, load verified artifacts.

Its alias, approval and promotion methods live in the mixins of `_aliases`,
`_approvals` and `_promotion`; the semantics are described in
`hortus.models.registry`.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from hortus.errors import ArtifactError, HortusError
from hortus.lakehouse._objstore import delete_object, get_object, is_uri, put_object
from hortus.lakehouse.contracts import check_frame
from hortus.lakehouse.tables import Lakehouse
from hortus.models._aliases import _AliasesMixin
from hortus.models._approvals import _ApprovalsMixin
from hortus.models._promotion import _PromotionMixin
from hortus.models._receipt import Receipt
from hortus.models._registry_base import (
    _NAME,
    _VERSION_REF,
    CHAMPION,
    VERSIONS,
    ModelVersion,
    _dumps,
    sha256_file,
)
from hortus.models._trust import check_archive, project_trust


class Registry(_AliasesMixin, _ApprovalsMixin, _PromotionMixin):
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

    def _stored(self, relpath: str) -> Path | str:
        if is_uri(relpath):  # an object in the bucket of a lakehouse on object storage
            return relpath
        return self._lh.paths.root / relpath  # an absolute relpath stays absolute

    @property
    def _bucket_root(self) -> str | None:
        """Return the object-store URI of this model's artifacts (None: lakehouse on disk)."""
        uri = self._lh.paths.lakehouse_uri
        return f"{uri}/ops/models/{self.name}" if uri else None

    # ---------------------------------------------------------------- reads
    def _versions_frame(self) -> pl.DataFrame:
        return (
            self._lh.scan_or_empty(VERSIONS)
            .filter(pl.col("name") == self.name)
            .sort("version")
            .collect()
        )

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
        must equal `sha256`, else ArtifactError and nothing is written; an
        artifact holding a type, function or partial outside the reviewed list
        (`hortus.models._trust`, extended by hortus.yaml `trusted_model_types`) is
        refused the same way, naming them.
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
        data = artifact.read_bytes()
        have = hashlib.sha256(data).hexdigest()
        if have != sha256:
            raise ArtifactError(
                f"model artifact {artifact} has sha256 {have}, expected {sha256}; "
                "nothing registered"
            )
        # refuse types no loader would trust, naming them, before anything is written (the
        # bytes checked are the bytes hashed; the stored copy is checked against that hash)
        check_archive(data, str(artifact), project_trust(self._lh.paths.root))
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
        if self._bucket_root is not None:
            version, relpath, undo = self._store_objects(artifact, version, sha256)
        else:
            version, relpath, undo = self._store_files(artifact, version, sha256)
        try:
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
            undo()
            raise
        return version

    def _store_files(self, artifact: Path, version: int, sha256: str):
        """Copy the artifact (and its signature) to ``v<N>/`` on disk; return (N, relpath, undo)."""
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
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        try:
            relpath = stored.relative_to(self._lh.paths.root).as_posix()
        except ValueError:
            relpath = str(stored)
        return version, relpath, lambda: shutil.rmtree(folder, ignore_errors=True)

    def _store_objects(self, artifact: Path, version: int, sha256: str):
        """Put the artifact in the bucket beside the lakehouse; return (N, its URI, undo).

        The model is content-addressed, ``ops/models/<name>/sha256/<sha256><suffix>``,
        with its signature file beside it (``<sha256>.signature.json``); both are written
        with a conditional PUT, so the same bytes registered again (or by another
        machine) are kept as first written.  v<N> is claimed by a conditional PUT of
        ``ops/models/<name>/v<N>.claim`` (the bucket's version of the folder claimed by
        mkdir on disk).  The stored bytes are read back and their sha256 checked.
        """
        base = self._bucket_root
        while True:
            claim = f"{base}/v{version}.claim"
            if put_object(claim, _dumps({"sha256": sha256}).encode(), if_absent=True):
                break
            version += 1
        try:
            stored = f"{base}/sha256/{sha256}{artifact.suffix}"
            put_object(stored, artifact.read_bytes(), if_absent=True)
            copied = hashlib.sha256(get_object(stored)).hexdigest()
            if copied != sha256:
                raise ArtifactError(
                    f"model artifact {artifact} stored as {stored} has sha256 {copied}, "
                    f"expected {sha256}; nothing registered"
                )
            sig_file = artifact.with_name(f"{artifact.stem}.signature.json")
            if sig_file.is_file():
                put_object(
                    f"{base}/sha256/{sha256}.signature.json", sig_file.read_bytes(), if_absent=True
                )
        except BaseException:
            delete_object(claim)
            raise
        return version, stored, lambda: delete_object(claim)

    def _append(
        self,
        table: str,
        row: dict,
        *,
        inputs: dict[str, int],
        note: str,
        guard: tuple[str, int, int | None] | None = None,
    ) -> None:
        contract = self._lh.catalog.get(table)
        df = pl.DataFrame([row], schema=contract.schema)
        bad = check_frame(df, contract)
        if bad.height:
            raise HortusError(f"{table}: refused row: {'; '.join(bad['message'].to_list())}")
        self._lh.write(table, df, mode="append", inputs=inputs, note=note, guard=guard)

    # ------------------------------------------------------------ artifacts
    def artifact_path(self, ref: str | int) -> Path | str:
        """Return where a version's stored artifact is: its absolute path, or its s3:// URI."""
        return self._stored(self.get(ref).artifact_path)

    def verify(self, ref: str | int) -> Path | str:
        """Return the stored artifact's path (or URI) if its SHA-256 matches, else raise."""
        mv = self.get(ref)
        where = self._stored(mv.artifact_path)
        if isinstance(where, str):
            self._fetch_verified(mv)
            return where
        if not where.is_file():
            raise ArtifactError(
                f"artifact of model {self.name} v{mv.version} is missing: {where} not found"
            )
        self._check(mv, where, sha256_file(where))
        return where

    def _check(self, mv: ModelVersion, where: Path | str, actual: str) -> None:
        if actual != mv.artifact_sha256:
            raise ArtifactError(
                f"artifact {where} of model {self.name} v{mv.version} has been altered: "
                f"expected sha256 {mv.artifact_sha256}, actual {actual}; refusing to load it"
            )

    def _fetch_verified(self, mv: ModelVersion) -> tuple[bytes, bytes]:
        """Return (model bytes, signature bytes) of an artifact in the bucket, hash checked."""
        uri = mv.artifact_path
        try:
            data = get_object(uri)
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact of model {self.name} v{mv.version} is missing: {uri} not found"
            ) from None
        self._check(mv, uri, hashlib.sha256(data).hexdigest())
        side = f"{uri.rsplit('/', 1)[0]}/{mv.artifact_sha256}.signature.json"
        try:
            sidecar = get_object(side)
        except FileNotFoundError:
            raise ArtifactError(
                f"{side}: cannot read the model signature of {self.name} v{mv.version} (not found)"
            ) from None
        return data, sidecar

    def load(self, ref: str | int) -> tuple[Any, Any]:
        """Verify then load a version's artifact; return `hortus.models.load_model`'s result.

        That is `(pipeline, signature)`.  The hash is checked here before any
        bytes are deserialised, and passed on so the loader checks it too.  An
        artifact in the bucket (lakehouse on object storage) is read as bytes and
        loaded from them with the same checks (skops, never pickle).
        """
        mv = self.get(ref)
        trusted = project_trust(self._lh.paths.root)
        if is_uri(mv.artifact_path):
            from hortus.models._artifacts import load_model_bytes

            data, sidecar = self._fetch_verified(mv)
            side = f"{mv.artifact_path.rsplit('/', 1)[0]}/{mv.artifact_sha256}.signature.json"
            return load_model_bytes(
                data, sidecar, where=mv.artifact_path, side=side,
                expected_sha256=mv.artifact_sha256, trusted=trusted,
            )  # fmt: skip
        path = self.verify(mv.version)
        from hortus.models.modeling import load_model

        return load_model(path, expected_sha256=mv.artifact_sha256, trusted=trusted)
