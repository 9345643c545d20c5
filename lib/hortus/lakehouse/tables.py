"""The one table API: every read and write of a lakehouse table goes through here.

Tables are Delta Lake tables on disk, named `layer.table` and located by the
catalog.  Each write is one Delta commit that carries its lineage in the commit
metadata (stage, inputs and the versions read, git commit, user), so the lineage
travels with the table and any Delta reader can see it.

This is also the single place where the access policy is enforced, for notebooks,
the CLI and the `dvc repro` stages alike:

- identity: `Lakehouse.user`, by default `hortus.governance.access.current_user()`
  (HORTUS_USER, else the OS user); the stages run as `pipeline` (dvc.yaml);
- policy: `Lakehouse.policy`, by default `<root>/access_policy.yaml`
  (`Policy.for_project`).  A project without that file denies everything, and
  every denial says to create it;
- reads (`scan`, `read`, `scan_or_empty`, `history`, `content_hash`) need the
  `read` grant and apply `Policy.read_plan`: the user's row filter, then masking
  of protected columns (same names and dtypes).  The restricted zone (bronze,
  quarantine) is open to its owner groups only;
- writes need the `write` grant; a write of a build table commits under its lease
  fence (`hortus.lakehouse.lease`): refused if another process holds the table's lease,
  or if this process's lease was taken over meanwhile (nothing is committed);
- `reidentify` turns tokens back into raw values with the `reidentify` grant
  (and read access to the raw table in the restricted zone);
- every allowed read and write and every denied attempt is recorded in the
  audit log `ops.audit_log` (`hortus.governance.audit`), buffered per Lakehouse and flushed
  at each write and denial, on `close()`, and at garbage collection or exit.
  Without an audit key nothing is read or written (fail closed).

`exists` and `version` answer from table metadata only and are not enforced.

Every write of a table outside the `ops` layer also records a ``table_committed``
event in `ops.events` (table, version, mode, rows, stage, user): one small Delta
append (about 10 ms), whatever the size of the write, and no alert configuration
is read here.  The events of this process wait in `pending_commits` until the
stage that made them (`hortus.monitoring.runlog.record_run`) dispatches them to the
rules and actions subscribed to ``table_committed``; the monitor run sees them all.
`ops.*` writes (the run log, alerts, the registry, the events themselves) record
none: they are bookkeeping of other events, and recording them would recurse.
The event row is written under the grant of the table write that caused it (the
user wrote that table; the event says only that it happened) and audited as such.
"""

from __future__ import annotations

import json
import sys
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import TableNotFoundError

from hortus.config import Paths
from hortus.errors import HortusError, TableNotFound
from hortus.governance.access import AccessDenied, Decision, Policy, ReadPlan
from hortus.governance.audit import AuditBuffer, AuditRecord, default_path
from hortus.lakehouse import delta_append, lease
from hortus.lakehouse._objstore import TableLocation
from hortus.lakehouse.catalog import BRONZE_META, VOLATILE_COLUMNS, Catalog
from hortus.lakehouse.contracts import Contract
from hortus.lakehouse.pii import load_key, tokenize_series
from hortus.lakehouse.silver_schema import stored_contract
from hortus.provenance import current_user, git_state

LINEAGE_PREFIX = "hortus."
# appends of at least this many rows go through hortus.lakehouse.delta_append (polars writes the
# Parquet file, deltalake commits it): 2x faster than deltalake's writer on 1M rows
FAST_APPEND_ROWS = 100_000
EVENTS_TABLE = "ops.events"
COMMIT_EVENT = "table_committed"
UNEVENTED_LAYERS = ("ops",)  # bookkeeping tables: no table_committed (see module docstring)
# table_committed events recorded by this process and not yet dispatched (bounded: a
# notebook that never runs a stage must not grow it without end)
_PENDING: deque[dict] = deque(maxlen=10_000)


def pending_commits(*, drain: bool = True) -> list[dict]:
    """Return the table_committed rows this process recorded since the last drain.

    `hortus.monitoring.runlog.record_run` drains them at the end of a stage run and
    dispatches them to the subscribed rules and actions.
    """
    out = list(_PENDING)
    if drain:
        for _ in out:
            _PENDING.popleft()
    return out


def read_contract(catalog: Catalog, name: str) -> Contract:
    """Return the contract that classifies a table's columns as stored, for masking.

    Silver stores direct identifiers as tokens and generalises some columns
    (birth_date -> age_band, birth_year): its stored contract classifies those.
    The ingestion metadata columns (`_source_file`, `_line`, `_batch_id`...) carry
    no personal data and are classified as such; any other column the contract
    does not list stays unclassified, hence masked for users without `unmask`.
    """
    contract = catalog.get(name)
    if contract.layer == "silver" and contract.landing is not None:
        contract = stored_contract(contract)
    extra = tuple(c for c in BRONZE_META if c.name not in contract.column_names)
    return replace(contract, columns=contract.columns + extra) if extra else contract


def _flush_at_exit(buffer: AuditBuffer) -> None:
    """Flush the audit records a Lakehouse still holds (finaliser: report, never raise)."""
    try:
        buffer.flush()
    except (HortusError, OSError) as exc:
        print(
            f"hortus: warning: {len(buffer.pending)} audit record(s) could not be written "
            f"to {buffer.path}: {exc}",
            file=sys.stderr,
        )


@dataclass
class Lakehouse:
    """Read and write catalogued Delta tables as one user, under the access policy.

    Every read applies the user's row filter and column masking, every write
    needs a grant, and every attempt is audited (see the module docstring).

    Examples
    --------
    >>> lh = Lakehouse(Paths.at(tmp), Catalog.load(), stage="kpis")   # doctest: +SKIP
    >>> events = lh.scan("silver.orders")                              # doctest: +SKIP
    >>> lh.write("gold.sales_daily", kpis, mode="overwrite")             # doctest: +SKIP
    >>> Lakehouse.open(user="alex").read("silver.customers")["email"][0]   # doctest: +SKIP
    'tok_3f9a...'
    """

    paths: Paths
    catalog: Catalog
    stage: str = "interactive"
    user: str = field(default_factory=current_user)
    reads: dict[str, int] = field(default_factory=dict)
    policy: Policy | None = None  # default: Policy.for_project(paths.policy)
    _audit: AuditBuffer = field(init=False, repr=False, compare=False)
    _pii_key: bytes | None = field(init=False, repr=False, compare=False, default=None)
    _pii_key_loaded: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = Policy.for_project(self.paths.policy)
        self._audit = AuditBuffer(default_path(self.paths), self.paths.secrets)
        weakref.finalize(self, _flush_at_exit, self._audit)

    @classmethod
    def open(
        cls,
        root: Path | None = None,
        *,
        stage: str = "interactive",
        user: str | None = None,
        policy: Policy | None = None,
        lakehouse: Path | str | None = None,
    ) -> Lakehouse:
        """Open the lakehouse of a project (default: the one holding the working dir).

        `user` defaults to HORTUS_USER, else the OS user; `policy` to the project's
        access_policy.yaml; `lakehouse` to HORTUS_LAKEHOUSE, else `<root>/lakehouse`
        (a folder, or an object-store URI `s3://bucket/prefix`: `hortus.lakehouse._objstore`).
        """
        if lakehouse is not None:
            paths = Paths.at(root or Paths.discover().root, lakehouse=lakehouse)
        else:
            paths = Paths.at(root) if root else Paths.discover()
        return cls(
            paths=paths,
            catalog=Catalog.load(root=paths.root),
            stage=stage,
            user=user or current_user(),
            policy=policy,
        )

    # ------------------------------------------------------------------ audit
    def flush_audit(self) -> int:
        """Write the buffered audit records now (one commit); return how many."""
        return self._audit.flush()

    def close(self) -> None:
        """Flush the audit records; the Lakehouse stays usable."""
        self.flush_audit()

    def __enter__(self) -> Lakehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorize(self, action: str, obj: str, *, detail: str = "") -> Decision:
        """Require a grant for an action outside scan/read/write and audit it; return the decision.

        For the registry (``promote``, ``register``, ``approve`` on a model name),
        the CLI (verifying the audit log) and any other guarded action: a denial
        is recorded, flushed and raised as AccessDenied; an allowed attempt is
        recorded with `detail` and flushed.

        Examples
        --------
        >>> lh.authorize("promote", "churn", detail="v3 -> champion")  # doctest: +SKIP
        """
        decision = self._require(action, obj)
        self._record(action, obj, detail, decision)
        self._audit.flush()
        return decision

    def _record(self, action: str, obj: str, detail: str, decision: Decision) -> None:
        self._audit.add(
            AuditRecord(
                user=self.user,
                action=action,
                object=obj,
                outcome="allowed",
                detail=f"{detail} stage={self.stage} grant: {decision.grant}".lstrip(),
                policy_version=decision.policy_version,
                ts=datetime.now(UTC),
            )
        )

    def _refuse(self, decision: Decision) -> AccessDenied:
        """Record a denied attempt, write it to disk, and return the error to raise."""
        record = AuditRecord.from_decision(
            decision, detail=f"missing: {decision.missing} stage={self.stage}"
        )
        self._audit.add(record)
        self._audit.flush()
        return AccessDenied(decision)

    def _require(self, action: str, obj: str) -> Decision:
        assert self.policy is not None
        self._audit.log()  # no audit key, no access: fail before deciding anything
        decision = self.policy.decide(self.user, action, obj)
        if not decision.allowed:
            raise self._refuse(decision)
        return decision

    def _key(self) -> bytes | None:
        """Return the PII key for masking, or None (masked raw strings become null)."""
        if not self._pii_key_loaded:
            try:
                self._pii_key = load_key(self.paths)
            except HortusError:
                self._pii_key = None  # documented: without a key masked strings are null
            self._pii_key_loaded = True
        return self._pii_key

    def _read_contract(self, name: str) -> Contract:
        return read_contract(self.catalog, name)

    def _plan(self, name: str, columns: list[str], contract: Contract) -> ReadPlan:
        assert self.policy is not None
        try:
            return self.policy.read_plan(self.user, name, columns, contract, key=self._key())
        except AccessDenied as exc:
            raise self._refuse(exc.decision) from None

    # -------------------------------------------------------------- locations
    def path(self, name: str) -> Path:
        """Return the folder of a catalogued table (a lakehouse on local disk only)."""
        contract = self.catalog.get(name)
        if self.paths.lakehouse_uri is not None:
            raise HortusError(
                f"table {name} lives on object storage ({self.location(name).uri}), not in a "
                "local folder: read and write it through the table API (Lakehouse.scan/write)"
            )
        return self.paths.table(contract.layer, contract.name)

    def location(self, name: str) -> TableLocation:
        """Return where a catalogued table lives: a local folder or an object-store URI."""
        contract = self.catalog.get(name)
        return TableLocation.of(self.paths.table_uri(contract.layer, contract.name))

    def exists(self, name: str) -> bool:
        """Return whether the table has been written at least once (not access-checked)."""
        return self.location(name).exists()

    def _delta(self, name: str, version: int | None = None) -> DeltaTable:
        where = self.location(name)
        try:
            return where.delta(version)
        except TableNotFoundError:
            raise TableNotFound(
                f"table {name} has not been written yet (expected at {where.uri}); "
                "run the pipeline first (`make run` or `dvc repro`)"
            ) from None

    def version(self, name: str) -> int:
        """Return the current Delta version of a table (metadata; not access-checked)."""
        return self._delta(name).version()

    # ------------------------------------------------------------------ reads
    def scan(self, name: str, *, version: int | None = None) -> pl.LazyFrame:
        """Return a lazy scan of a table as this user may see it; record and audit the read.

        Needs the `read` grant (else AccessDenied, audited); applies the user's row
        filter and masks protected columns (names and dtypes kept).
        """
        self.catalog.get(name)  # unknown tables: TableNotFound
        self._require("read", name)  # before touching the table: no existence oracle
        dt = self._delta(name, version)
        if version is not None:  # time travel: an erased version says so
            _check_erased(dt, self.location(name), name)
        lf = pl.scan_delta(dt, **self.location(name).write_kwargs())
        plan = self._plan(name, lf.collect_schema().names(), self._read_contract(name))
        self.reads[name] = dt.version()
        self._record("read", name, f"v{dt.version()} {plan.describe()}", plan.decision)
        return plan.apply(lf)

    def read(
        self, name: str, *, version: int | None = None, columns: list[str] | None = None
    ) -> pl.DataFrame:
        """Read a table into memory as this user may see it (optionally only some columns)."""
        lf = self.scan(name, version=version)
        return (lf.select(columns) if columns else lf).collect()

    def masked_columns(self, name: str) -> tuple[str, ...]:
        """Return the columns of a table this user reads masked (asked of the policy only)."""
        contract = self._read_contract(name)
        assert self.policy is not None
        plan = self.policy.read_plan(
            self.user, name, contract.column_names, contract, key=self._key()
        )
        return plan.masked

    def scan_or_empty(self, name: str) -> pl.LazyFrame:
        """Scan a table, or return an empty frame of its contract schema if never written."""
        if self.exists(name):
            return self.scan(name)
        contract = self.catalog.get(name)
        self._require("read", name)
        plan = self._plan(name, contract.column_names, self._read_contract(name))
        self._record("read", name, f"not written yet {plan.describe()}", plan.decision)
        return plan.apply(pl.LazyFrame(schema=contract.schema))

    # -------------------------------------------------------- re-identification
    def reidentify(self, table: str, column: str, tokens: Iterable[str]) -> pl.DataFrame:
        """Return the raw value behind each token of a tokenised column (token, value).

        Needs the `reidentify` grant on ``table.column`` and read access to the raw
        source in the restricted zone (``bronze.<name>``): tokens cannot be
        reversed, so the raw column is read, each distinct raw value tokenised with
        the PII key as silver does, and the tokens joined back.  A token with no
        raw value gets a null.  Audited as one `reidentify` record (counts only).

        Examples
        --------
        >>> tokens = ["tok_77cff80182a460c0f4360ae6"]
        >>> lh.reidentify("silver.customers", "email", tokens)  # doctest: +SKIP
        """
        contract = self.catalog.get(table)
        col = contract.column(column)
        if col.pii != "direct" or contract.landing is None:
            raise HortusError(
                f"{table}.{column} holds no keyed tokens (pii: {col.pii}); only direct "
                "identifiers of landed tables are tokenised and can be re-identified"
            )
        source = f"bronze.{contract.name}"
        decision = self._require("reidentify", f"{table}.{column}")
        self._require("read", source)  # raw values live in the restricted zone
        key = load_key(self.paths)
        wanted = pl.DataFrame({"token": pl.Series(list(tokens), dtype=pl.String)})
        dt = self._delta(source)
        raw_contract = self.catalog.get(source)
        raw = (
            pl.col(column)
            if column in raw_contract.column_names
            else pl.col("_raw").str.json_path_match(f"$.{column}")
        )
        values = (
            pl.scan_delta(dt, **self.location(source).write_kwargs())
            .select(raw.alias("value"))
            .filter(pl.col("value").str.strip_chars() != "")  # silver: blank = missing
            .unique()
            .collect()
            .to_series()
        )
        lookup = pl.DataFrame({"token": tokenize_series(values, key), "value": values}).unique(
            "token", keep="first"
        )
        out = wanted.join(lookup, on="token", how="left", maintain_order="left")
        found = out["value"].is_not_null().sum()
        self._record(
            "reidentify",
            f"{table}.{column}",
            f"tokens={wanted.height} resolved={found} source={source} v{dt.version()}",
            decision,
        )
        self._audit.flush()
        return out

    # ----------------------------------------------------------------- writes
    def _fenced(self, name: str) -> AbstractContextManager[None]:
        """Return the commit fence of a table: its lease must still be ours (lease.py)."""
        contract = self.catalog.get(name)
        scope = lease.scope_for(contract.layer, contract.full_name)
        return lease.fenced_commit(self.paths.lakehouse_root, scope, name)

    def lineage_metadata(
        self, *, inputs: Mapping, note: str | None = None, stage: str | None = None, **extra: str
    ) -> dict[str, str]:
        """Return the lineage a commit carries (its Delta commitInfo custom metadata).

        Stage (default: this table API's), the tables and versions read (`inputs`), the
        git commit and whether the tree was dirty, the user, the time, an optional note
        and any `extra` fields (rows, model, features, lease, ...), each prefixed with
        LINEAGE_PREFIX.  Every writer of a Hortus table (the table API, erasure, key
        rotation) builds its commit's lineage here.
        """
        sha, dirty = git_state(self.paths.root)
        lineage = {
            "stage": stage or self.stage,
            "inputs": json.dumps(dict(inputs), sort_keys=True),
            "git_commit": sha,
            "git_dirty": str(dirty).lower(),
            "user": self.user,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **({"note": note} if note is not None else {}),
            **extra,
        }
        return {LINEAGE_PREFIX + k: v for k, v in lineage.items()}

    def write(
        self,
        name: str,
        df: pl.DataFrame,
        *,
        mode: str = "append",
        inputs: dict[str, int] | None = None,
        note: str | None = None,
        model: str | None = None,
        features: Iterable[str] | None = None,
        guard: tuple[str, int, int | None] | None = None,
    ) -> int:
        """Write a frame as one Delta commit with its lineage; return the new version.

        `inputs` defaults to every table this Lakehouse has read so far, with the
        versions read; a stage that knows what one write read passes it (lineage per
        write, not per stage).  `model` names the model version that wrote the rows
        ("recommender@v3") and `features` the feature groups used; both are recorded in
        the commit when given (`hortus lineage`).  `mode` is "append" or "overwrite".

        `guard` = (app_id, app_version, read_version) makes the write a compare-and-set
        (alias moves): it commits on the snapshot of `read_version` (None: the table is
        new) with a Delta transaction identifier; if a commit carrying the same app_id
        landed after that snapshot, Delta's conflict check refuses it and WriteConflict
        is raised (nothing written).  Atomic on local disk and object storage alike.
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be append or overwrite, got {mode!r}")
        contract = self.catalog.get(name)  # unknown tables: refused before anything is written
        decision = self._require("write", name)
        where = self.location(name)
        path = where.local
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"rows": str(df.height)}
        if model:
            extra["model"] = model
        if features:
            extra["features"] = json.dumps(sorted(set(features)))
        held = lease.held(self.paths.lakehouse_root, lease.scope_for(contract.layer, name))
        if held is not None:  # the fencing token this commit was made under
            extra["lease"] = f"{held.scope}#{held.token}"
        meta = self.lineage_metadata(
            inputs=inputs if inputs is not None else self.reads, note=note or None, **extra
        )
        commit = CommitProperties(custom_metadata=meta)
        options = {"schema_mode": "merge" if mode == "append" else "overwrite"}
        with self._fenced(name) as fence:  # one writer per build table (hortus.lakehouse.lease)
            if guard is not None:
                _guarded_write(where, df, mode, meta, options, guard)
            elif fence is not None:  # object storage: the lease token goes into the commit
                fenced = CommitProperties(
                    custom_metadata=meta, app_transactions=fence.transactions()
                )
                fence.commit(
                    where,
                    lambda dt: df.write_delta(
                        dt if dt is not None else where.uri,
                        mode=mode,
                        delta_write_options=options | {"commit_properties": fenced},
                        **where.write_kwargs(),
                    ),
                )
            else:
                fast = (
                    path is not None
                    and mode == "append"
                    # large rows too: its row groups are capped in bytes (delta_append)
                    and (
                        df.height >= FAST_APPEND_ROWS
                        or df.estimated_size() > delta_append.ROW_GROUP_BYTES
                    )
                    and delta_append.append(path, df, commit)
                )
                if not fast:
                    df.write_delta(
                        where.uri,
                        mode=mode,
                        delta_write_options=options | {"commit_properties": commit},
                        **where.write_kwargs(),
                    )
            version = where.delta().version()
        self._record("write", name, f"v{version} mode={mode} rows={df.height}", decision)
        if contract.layer not in UNEVENTED_LAYERS and EVENTS_TABLE in self.catalog.names("ops"):
            self._commit_event(
                name, version, mode, df.height, decision, meta[LINEAGE_PREFIX + "git_commit"]
            )
        self._audit.flush()
        return version

    def _commit_event(
        self, name: str, version: int, mode: str, rows: int, decision: Decision, sha: str
    ) -> None:
        """Append the table_committed event of a write to ops.events (one small commit)."""
        at = datetime.now(UTC)
        row = {
            "at": at,
            "type": COMMIT_EVENT,
            "subject": name,
            "detail": json.dumps(
                {"version": version, "mode": mode, "rows": rows, "stage": self.stage},
                sort_keys=True,
            ),
            "actor": self.user,
        }
        where = self.location(EVENTS_TABLE)
        if where.local is not None:
            where.local.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            LINEAGE_PREFIX + "stage": self.stage,
            LINEAGE_PREFIX + "inputs": json.dumps({name: version}),
            LINEAGE_PREFIX + "git_commit": sha,
            LINEAGE_PREFIX + "user": self.user,
            LINEAGE_PREFIX + "rows": "1",
            LINEAGE_PREFIX + "written_at": at.isoformat(timespec="seconds"),
            LINEAGE_PREFIX + "note": f"{COMMIT_EVENT} {name} v{version}",
        }
        pl.DataFrame([row], schema=self.catalog.get(EVENTS_TABLE).schema).write_delta(
            where.uri,
            mode="append",
            delta_write_options={"commit_properties": CommitProperties(custom_metadata=meta)},
            **where.write_kwargs(),
        )
        detail = f"{COMMIT_EVENT} {name} v{version} (recorded under the grant of that write)"
        self._record("write", EVENTS_TABLE, detail, decision)
        _PENDING.append(row)

    def delete_rows(
        self,
        name: str,
        column: str,
        values: list[str],
        *,
        note: str,
        where: dict[str, str] | None = None,
    ) -> int | None:
        """Delete the rows whose `column` is in `values` (and `where` columns equal) in one commit.

        Used to undo a partial write before it is redone (silver's crash recovery).
        Needs the `write` grant; the commit carries lineage like a write and is
        audited.  Returns the new version, or None when nothing matched.
        """
        if not values:
            return None
        self.catalog.get(name)
        decision = self._require("write", name)
        if not self.exists(name):
            return None

        def lit(v: object) -> str:
            return "'" + str(v).replace("'", "''") + "'"

        predicate = f'"{column}" IN ({", ".join(lit(v) for v in values)})'
        predicate += "".join(f' AND "{c}" = {lit(v)}' for c, v in (where or {}).items())
        meta = self.lineage_metadata(inputs={}, note=note)
        where = self.location(name)
        with self._fenced(name) as fence:
            if fence is not None:  # object storage: the lease token goes into the commit
                props = CommitProperties(
                    custom_metadata=meta, app_transactions=fence.transactions()
                )
                metrics = fence.commit(
                    where, lambda dt: dt.delete(predicate, commit_properties=props)
                )
            else:
                metrics = where.delta().delete(
                    predicate, commit_properties=CommitProperties(custom_metadata=meta)
                )
        deleted = int((metrics or {}).get("num_deleted_rows", 0) or 0)
        version = where.delta().version()
        self._record("delete", name, f"v{version} rows={deleted} {note}", decision)
        self._audit.flush()
        return version

    # ---------------------------------------------------------------- lineage
    def history(self, name: str) -> pl.DataFrame:
        """Return one row per table version: operation, rows, and the lineage of the write.

        Needs the `read` grant (lineage names users, stages and inputs); audited.
        """
        decision = self._require("read", name)
        dt = self._delta(name)
        self._record("read", name, f"v{dt.version()} history", decision)
        rows = []
        for h in dt.history():
            inputs = h.get(LINEAGE_PREFIX + "inputs")
            rows.append(
                {
                    "version": h["version"],
                    "timestamp": datetime.fromtimestamp(h["timestamp"] / 1000, UTC),
                    "operation": h.get("operation"),
                    "rows_added": _rows_added(h),
                    "stage": h.get(LINEAGE_PREFIX + "stage"),
                    "inputs": inputs,
                    "git_commit": h.get(LINEAGE_PREFIX + "git_commit"),
                    "git_dirty": h.get(LINEAGE_PREFIX + "git_dirty"),
                    "user": h.get(LINEAGE_PREFIX + "user"),
                    "model": h.get(LINEAGE_PREFIX + "model"),
                    "features": h.get(LINEAGE_PREFIX + "features"),
                }
            )
        strings = {k: pl.String for k in ("inputs", "model", "features")}
        return pl.DataFrame(rows, schema_overrides=strings).sort("version")

    def content_hash(self, name: str, *, version: int | None = None) -> str:
        """Return an order-independent hash of a table's contents as this user sees them.

        The hash is of the rows and columns `read` returns: for a user with a row
        filter or masked columns it differs from the hash of the full table (the
        pipeline, which sees everything in the clear, hashes the full table).
        Leaves out the ingestion-time columns (`_ingested_at`, ...), so two builds
        from the same inputs hash the same although Delta file names and commit
        times differ.  Stable for one polars version (pinned by uv.lock).  Streamed in
        batches (`frames_hash`): memory holds a batch, not the table (silver's bound).
        """
        lf = self.scan(name, version=version)
        return frames_hash(lf.collect_batches(chunk_size=50_000), lf.collect_schema().names())


class WriteConflict(HortusError):
    """A guarded write lost its compare-and-set: a commit of the same app id came first."""


def _guarded_write(
    where: TableLocation,
    df: pl.DataFrame,
    mode: str,
    meta: dict,
    options: dict,
    guard: tuple[str, int, int | None],
) -> None:
    """Commit `df` on the snapshot of the version read, with a txn action (see write)."""
    from deltalake import Transaction
    from deltalake.exceptions import CommitFailedError, DeltaError

    app_id, app_version, read_version = guard
    props = CommitProperties(
        custom_metadata=meta,
        app_transactions=[
            Transaction(app_id, app_version, int(datetime.now(UTC).timestamp() * 1000))
        ],
    )
    target = where.delta(read_version) if read_version is not None else where.uri
    try:
        df.write_delta(
            target,
            mode=mode if read_version is not None else "error",  # new: create it, or conflict
            delta_write_options=options | {"commit_properties": props},
            **where.write_kwargs(),
        )
    except CommitFailedError as exc:
        raise WriteConflict(f"{app_id}: another commit came first ({exc})") from None
    except DeltaError as exc:
        if read_version is None and where.exists():  # both created the table: one won
            raise WriteConflict(f"{app_id}: the table was created meanwhile ({exc})") from None
        raise


def _check_erased(dt: DeltaTable, where: TableLocation, name: str) -> None:
    """Refuse, saying why, a table version whose data files an erasure deleted."""
    if where.local is None:  # object storage: one listing of the table's files
        from hortus.lakehouse._objstore import TableFiles

        files = TableFiles(where)
        there = set(files.data_files())
        missing = [u for u in dt.file_uris() if files.relative(u) not in there]
    else:
        missing = [u for u in dt.file_uris() if not Path(u.removeprefix("file://")).exists()]
    if missing:
        removed = _removed_by_maintain(where, dt.version())  # hortus maintain's retention or vacuum
        if removed:
            raise HortusError(f"{name} v{dt.version()} cannot be read: {removed}")
        raise HortusError(
            f"{name} v{dt.version()} cannot be read: {len(missing)} of its data files were "
            "deleted by a right-to-erasure request (`hortus erase`, recorded in ops.erasures) "
            "because they held an erased data subject; its inputs were erased. Read the "
            "current version or one written after the erasure"
        )


def _removed_by_maintain(where: TableLocation, version: int) -> str | None:
    """Say which `hortus maintain` commit removed a version's files (None: not maintain)."""
    later = [h for h in where.delta().history() if h["version"] > version]
    for h in sorted(later, key=lambda h: h["version"]):
        note = str(h.get(LINEAGE_PREFIX + "note") or "")
        when = datetime.fromtimestamp(h["timestamp"] / 1000, UTC)
        if note.startswith("retention"):
            return (
                f"its rows were removed by retention on {when:%Y-%m-%d} (`hortus maintain`, "
                f"the contract's retention: {note}); its inputs were removed by retention"
            )
    if any(h.get(LINEAGE_PREFIX + "stage") == "erase" for h in later):
        return None  # an erasure: its own message
    if any(str(h.get(LINEAGE_PREFIX + "note") or "").startswith("maintain: vacuum") for h in later):
        return (
            "its data files were vacuumed (`hortus maintain` keeps only the versions a "
            "registered receipt reads, and the last vacuum_hours of others)"
        )
    return None


def frame_hash(df: pl.DataFrame) -> str:
    """Return an order-independent content hash of a frame (columns sorted by name)."""
    return frames_hash([df], df.columns)


def frames_hash(frames: Iterable[pl.DataFrame], columns: list[str]) -> str:
    """Return `frame_hash` of the rows of several frames (batches of one table) together.

    Row hashes are summed (mod 2**64) and xor-ed, so any split into batches gives
    the hash of the whole frame.
    """
    cols = sorted(c for c in columns if c not in VOLATILE_COLUMNS)
    rows = total = xor = 0
    for df in frames:
        if df.height:
            h = df.select(cols).hash_rows(seed=7)
            total = (total + int(h.cast(pl.UInt64).sum())) & 0xFFFFFFFFFFFFFFFF
            xor ^= int(h.to_frame().select(pl.col(h.name).bitwise_xor()).item())
            rows += df.height
    if rows == 0:
        return f"rows=0;cols={','.join(cols)}"
    return f"rows={rows};sum={total:016x};xor={xor:016x}"


def _rows_added(commit: dict) -> int | None:
    """Return the rows a commit added: deltalake's metrics, else the lineage's row count.

    Commits of hortus.lakehouse.delta_append carry no operation metrics (deltalake records
    them as a transaction); their lineage says how many rows were written.
    """
    added = (commit.get("operationMetrics") or {}).get("num_added_rows")
    if added is None and commit.get(LINEAGE_PREFIX + "rows") is not None:
        added = int(commit[LINEAGE_PREFIX + "rows"])
    return added
