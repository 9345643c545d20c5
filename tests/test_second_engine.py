"""Tables other engines can read (issue 16 item 3): a second reader independent of delta-rs.

The reader below replays a table's Delta log itself (``_delta_log/<version>.json``
commits, and a checkpoint Parquet file when there is one: add and remove actions,
the Delta protocol's own rules) to find the Parquet files of a version, then reads
them with pyarrow.dataset: no deltalake, no polars Delta reader.  It reads tables
the table API wrote, from local disk and from the S3 server (pyarrow's own S3
filesystem), at the current version and back in time, and checks they are plain
Delta (reader version 1, writer version 2, no table features), which Spark and
Databricks read.  DuckDB is not used: its delta extension downloads at run time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import unquote, urlparse

import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from hortus.lakehouse.tables import Lakehouse, frame_hash

pytest_plugins = ("s3server",)  # the S3 server fixtures: s3_server, s3_lake

USERS = "silver.users"


class DeltaLogReader:
    """Read a Delta table by replaying its log: an engine that shares no code with delta-rs."""

    def __init__(self, fs: pafs.FileSystem, root: str):
        self.fs, self.root = fs, root.rstrip("/")

    def _log(self) -> str:
        return f"{self.root}/_delta_log"

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as fh:
            return fh.read()

    def commits(self) -> dict[int, list[dict]]:
        """Return the actions of each JSON commit by version."""
        infos = self.fs.get_file_info(pafs.FileSelector(self._log()))
        out = {}
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            if name.endswith(".json") and name[:-5].isdigit():
                lines = self._read(info.path).decode().splitlines()
                out[int(name[:-5])] = [json.loads(line) for line in lines if line.strip()]
        return dict(sorted(out.items()))

    def _checkpoint(self, upto: int) -> tuple[int, set[str]]:
        """Return (version, live files) of the newest checkpoint at or below `upto`, if any."""
        infos = self.fs.get_file_info(pafs.FileSelector(self._log()))
        found = sorted(
            int(i.path.rsplit("/", 1)[-1].split(".")[0])
            for i in infos
            if i.path.endswith(".checkpoint.parquet")
        )
        found = [v for v in found if v <= upto]
        if not found:
            return -1, set()
        path = f"{self._log()}/{found[-1]:020d}.checkpoint.parquet"
        table = pq.read_table(path, filesystem=self.fs, columns=["add"])
        adds = [a["path"] for a in table.column("add").to_pylist() if a is not None]
        return found[-1], set(adds)

    def protocol(self) -> dict:
        """Return the protocol action in force (the last one in the log)."""
        proto = {}
        for actions in self.commits().values():
            for action in actions:
                proto = action.get("protocol", proto)
        return proto

    def files(self, version: int | None = None) -> list[str]:
        """Return the data files of a version: replay add/remove over the log."""
        commits = self.commits()
        version = max(commits) if version is None else version
        start, live = self._checkpoint(version)
        for v, actions in commits.items():
            if start < v <= version:
                for action in actions:
                    if "add" in action:
                        live.add(action["add"]["path"])
                    elif "remove" in action:
                        live.discard(action["remove"]["path"])
        return sorted(f"{self.root}/{unquote(p)}" for p in live)

    def read(self, version: int | None = None) -> pl.DataFrame:
        files = self.files(version)
        if not files:
            return pl.DataFrame()
        table = ds.dataset(files, format="parquet", filesystem=self.fs).to_table()
        return pl.DataFrame(pl.from_arrow(table))


def _users(lh: Lakehouse, ids: range) -> pl.DataFrame:
    schema = lh.catalog.get(USERS).schema
    cols = {
        "user_id": [f"u{i:06d}" for i in ids],
        "email": [f"tok_mail{i}" for i in ids],
        "region": ["DACH" if i % 2 else "NORDICS" for i in ids],
        "birth_year": [1950 + i for i in ids],
        "signup_at": [datetime(2025, 3, 1, tzinfo=UTC)] * len(ids),
    }
    return pl.DataFrame({c: cols.get(c, [None] * len(ids)) for c in schema}, schema=schema)


def _build(lh: Lakehouse) -> None:
    """Three commits of the table API: overwrite, append, delete (a remove action)."""
    lh.write(USERS, _users(lh, range(5)), mode="overwrite")
    lh.write(USERS, _users(lh, range(5, 9)))
    lh.delete_rows(USERS, "user_id", ["u000002", "u000007"], note="undo")


def _same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    return a.height == b.height and frame_hash(a.select(b.columns)) == frame_hash(b)


def _check_plain_delta(reader: DeltaLogReader) -> None:
    proto = reader.protocol()
    assert proto["minReaderVersion"] == 1 and proto["minWriterVersion"] == 2, proto
    assert not proto.get("readerFeatures") and not proto.get("writerFeatures"), proto
    for actions in reader.commits().values():
        for action in actions:
            meta = action.get("metaData")
            if meta:  # no table properties that would need a newer reader
                assert not meta.get("configuration"), meta["configuration"]
                assert meta["format"]["provider"] == "parquet"
            if "add" in action:
                assert not action["add"].get("deletionVector")


def test_a_second_engine_reads_local_tables_by_replaying_the_delta_log(project, lakehouse):
    """Check pyarrow over the files the log names equals the table API, now and back in time."""
    _build(lakehouse)
    reader = DeltaLogReader(pafs.LocalFileSystem(), str(lakehouse.path(USERS)))
    assert _same(reader.read(), lakehouse.read(USERS))
    assert sorted(reader.read()["user_id"]) == sorted(
        f"u{i:06d}" for i in range(9) if i not in (2, 7)
    )
    for version in (0, 1):
        assert _same(reader.read(version), lakehouse.read(USERS, version=version))
    _check_plain_delta(reader)
    # the operations tables the same API wrote meanwhile (the audit log, its events)
    audit = DeltaLogReader(pafs.LocalFileSystem(), str(lakehouse.path("ops.audit_log")))
    _check_plain_delta(audit)
    assert audit.read().height == lakehouse.read("ops.audit_log").height


def test_a_second_engine_reads_local_tables_after_a_checkpoint(project, lakehouse):
    """Check the reader starts from a checkpoint (hortus maintain writes them) when present."""
    _build(lakehouse)
    lakehouse.location(USERS).delta().create_checkpoint()
    lakehouse.write(USERS, _users(lakehouse, range(20, 22)))
    reader = DeltaLogReader(pafs.LocalFileSystem(), str(lakehouse.path(USERS)))
    assert reader._checkpoint(3)[0] == 2
    assert _same(reader.read(), lakehouse.read(USERS))


def test_a_second_engine_reads_tables_from_the_object_store(project, s3_lake, s3_server):
    """Check pyarrow's own S3 filesystem reads the bucket's tables as the table API does."""
    lh = Lakehouse.open(project.root, lakehouse=s3_lake, stage="test")
    _build(lh)
    endpoint = urlparse(s3_server.endpoint)
    env = s3_server.env()
    fs = pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        endpoint_override=endpoint.netloc,
        scheme="http",
    )
    uri = lh.location(USERS).uri
    reader = DeltaLogReader(fs, uri.removeprefix("s3://"))
    assert _same(reader.read(), lh.read(USERS))
    assert _same(reader.read(0), lh.read(USERS, version=0))
    _check_plain_delta(reader)
    lh.close()


def test_a_second_engine_reads_the_fast_append_path(project, lakehouse, monkeypatch):
    """Check an append that polars writes and deltalake only commits (delta_append) reads back."""
    from hortus.lakehouse import delta_append, tables

    _build(lakehouse)
    fast: list[bool] = []
    append = delta_append.append
    monkeypatch.setattr(tables, "FAST_APPEND_ROWS", 1)
    monkeypatch.setattr(delta_append, "append", lambda *a: fast.append(append(*a)) or fast[-1])
    lakehouse.write(USERS, _users(lakehouse, range(100, 120)))
    assert fast == [True]  # the fast path wrote it
    reader = DeltaLogReader(pafs.LocalFileSystem(), str(lakehouse.path(USERS)))
    assert _same(reader.read(), lakehouse.read(USERS))
    _check_plain_delta(reader)


@pytest.mark.parametrize("name", ["gold.kpi_daily", "ops.events"])
def test_other_writers_of_the_api_stay_plain_delta(lakehouse, name):
    """Check an empty-schema write (a new table) of other layers makes plain Delta too."""
    schema = lakehouse.catalog.get(name).schema
    lakehouse.write(name, pl.DataFrame(schema=schema), mode="overwrite")
    _check_plain_delta(DeltaLogReader(pafs.LocalFileSystem(), str(lakehouse.path(name))))
