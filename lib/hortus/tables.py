"""The one table API: every read and write of a lakehouse table goes through here.

Tables are Delta Lake tables on disk, named `layer.table` and located by the
catalog.  Each write is one Delta commit that carries its lineage in the commit
metadata (stage, inputs and the versions read, git commit, user), so the lineage
travels with the table and any Delta reader can see it.  This is also the single
place where access policy is enforced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import TableNotFoundError

from hortus.catalog import VOLATILE_COLUMNS, Catalog
from hortus.config import Paths
from hortus.errors import TableNotFound
from hortus.provenance import current_user, git_state

LINEAGE_PREFIX = "hortus."


@dataclass
class Lakehouse:
    """Read and write catalogued Delta tables, recording lineage.

    Examples
    --------
    >>> lh = Lakehouse(Paths.at(tmp), Catalog.load(), stage="kpis")   # doctest: +SKIP
    >>> events = lh.scan("silver.events")                              # doctest: +SKIP
    >>> lh.write("gold.kpi_daily", kpis, mode="overwrite")             # doctest: +SKIP
    """

    paths: Paths
    catalog: Catalog
    stage: str = "interactive"
    user: str = field(default_factory=current_user)
    reads: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path | None = None, *, stage: str = "interactive") -> Lakehouse:
        """Open the lakehouse of a project (default: the one holding the working dir)."""
        paths = Paths.at(root) if root else Paths.discover()
        return cls(paths=paths, catalog=Catalog.load(), stage=stage)

    # -------------------------------------------------------------- locations
    def path(self, name: str) -> Path:
        """Return the folder of a catalogued table."""
        contract = self.catalog.get(name)
        return self.paths.table(contract.layer, contract.name)

    def exists(self, name: str) -> bool:
        """Return whether the table has been written at least once."""
        return (self.path(name) / "_delta_log").is_dir()

    def _delta(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(str(self.path(name)), version=version)
        except TableNotFoundError:
            raise TableNotFound(
                f"table {name} has not been written yet (expected at {self.path(name)}); "
                "run the pipeline first (`make run` or `dvc repro`)"
            ) from None

    def version(self, name: str) -> int:
        """Return the current Delta version of a table."""
        return self._delta(name).version()

    # ------------------------------------------------------------------ reads
    def scan(self, name: str, *, version: int | None = None) -> pl.LazyFrame:
        """Return a lazy scan of a table (optionally at an older version); record the read."""
        dt = self._delta(name, version)
        self.reads[name] = dt.version()
        return pl.scan_delta(dt)

    def read(
        self, name: str, *, version: int | None = None, columns: list[str] | None = None
    ) -> pl.DataFrame:
        """Read a table into memory (optionally only some columns)."""
        lf = self.scan(name, version=version)
        return (lf.select(columns) if columns else lf).collect()

    def scan_or_empty(self, name: str) -> pl.LazyFrame:
        """Scan a table, or return an empty frame of its contract schema if never written."""
        if self.exists(name):
            return self.scan(name)
        return pl.LazyFrame(schema=self.catalog.get(name).schema)

    # ----------------------------------------------------------------- writes
    def write(
        self,
        name: str,
        df: pl.DataFrame,
        *,
        mode: str = "append",
        inputs: dict[str, int] | None = None,
        note: str | None = None,
    ) -> int:
        """Write a frame as one Delta commit with its lineage; return the new version.

        `inputs` defaults to every table this Lakehouse has read so far, with the
        versions read.  `mode` is "append" or "overwrite".
        """
        if mode not in ("append", "overwrite"):
            raise ValueError(f"mode must be append or overwrite, got {mode!r}")
        self.catalog.get(name)  # unknown tables are refused before anything is written
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        sha, dirty = git_state(self.paths.root)
        lineage = {
            "stage": self.stage,
            "inputs": json.dumps(inputs if inputs is not None else self.reads, sort_keys=True),
            "git_commit": sha,
            "git_dirty": str(dirty).lower(),
            "user": self.user,
            "rows": str(df.height),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if note:
            lineage["note"] = note
        meta = {LINEAGE_PREFIX + k: v for k, v in lineage.items()}
        df.write_delta(
            str(path),
            mode=mode,
            delta_write_options={
                "commit_properties": CommitProperties(custom_metadata=meta),
                "schema_mode": "merge" if mode == "append" else "overwrite",
            },
        )
        return DeltaTable(str(path)).version()

    # ---------------------------------------------------------------- lineage
    def history(self, name: str) -> pl.DataFrame:
        """Return one row per table version: operation, rows, and the lineage of the write."""
        rows = []
        for h in self._delta(name).history():
            inputs = h.get(LINEAGE_PREFIX + "inputs")
            rows.append(
                {
                    "version": h["version"],
                    "timestamp": datetime.fromtimestamp(h["timestamp"] / 1000, UTC),
                    "operation": h.get("operation"),
                    "rows_added": (h.get("operationMetrics") or {}).get("num_added_rows"),
                    "stage": h.get(LINEAGE_PREFIX + "stage"),
                    "inputs": inputs,
                    "git_commit": h.get(LINEAGE_PREFIX + "git_commit"),
                    "git_dirty": h.get(LINEAGE_PREFIX + "git_dirty"),
                    "user": h.get(LINEAGE_PREFIX + "user"),
                }
            )
        return pl.DataFrame(rows, schema_overrides={"inputs": pl.String}).sort("version")

    def content_hash(self, name: str, *, version: int | None = None) -> str:
        """Return an order-independent hash of a table's contents.

        Leaves out the ingestion-time columns (`_ingested_at`, ...), so two builds
        from the same inputs hash the same although Delta file names and commit
        times differ.  Stable for one polars version (pinned by uv.lock).
        """
        df = self.read(name, version=version)
        return frame_hash(df)


def frame_hash(df: pl.DataFrame) -> str:
    """Return an order-independent content hash of a frame (columns sorted by name)."""
    cols = sorted(c for c in df.columns if c not in VOLATILE_COLUMNS)
    df = df.select(cols)
    if df.height == 0:
        return f"rows=0;cols={','.join(cols)}"
    h = df.hash_rows(seed=7)
    total = int(h.cast(pl.UInt64).sum()) & 0xFFFFFFFFFFFFFFFF
    xor = int(h.to_frame().select(pl.col(h.name).bitwise_xor()).item())
    return f"rows={df.height};sum={total:016x};xor={xor:016x}"
