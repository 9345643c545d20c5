"""Silver's memory bound does not change its results (issue 18 item 1).

Silver processes bronze in chunks of whole files capped by rows and by bytes
(`silver.CHUNK_BYTES`) and looks up the keys already in silver per chunk, streamed
and filtered to that chunk's keys, instead of holding all of silver's keys.  The
rows accepted and quarantined must be those of one pass over everything: a shop with
every simulator fault (plus a day landed twice under another name, so every row of a
later chunk repeats a key of an earlier run), built in one ingest and one silver run
with the default chunks, and built in two ingest + silver runs with one file per
chunk, have equal content hashes for every silver table and quarantine.rows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from conftest import TEST_KEY, with_policy
from hortus.config import Paths
from hortus.lakehouse import silver
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.ingest import ingest
from hortus.lakehouse.tables import Lakehouse, frame_hash

OPTIONS = silver.SilverOptions(key=TEST_KEY.encode())
SIM = {"seed": 9, "days": 4, "users": 120, "plants": 25, "fault_rate": 0.02}
#: which run landed a row: differs between one ingest run and two (see test_chaos.py)
BOOKKEEPING = ("_batch_id", "batch_id")
DUP_NAME = "events-2025-03-28.jsonl.gz"  # after every simulated day


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> tuple[Path, str]:
    """A small shop with every fault, its largest events file landed again later.

    Returns the landing folder and the name (under it) of the file landed twice.
    """
    from hortus.domains.plantshop.simulate import FAULTS, SimConfig, simulate

    folder = tmp_path_factory.mktemp("landing") / "data"
    simulate(SimConfig(**SIM, faults=FAULTS), folder)
    largest = max((folder / "events").glob("*.jsonl.gz"), key=lambda p: p.stat().st_size)
    shutil.copy(largest, folder / "events" / DUP_NAME)
    return folder, largest.relative_to(folder).as_posix()


def _root(tmp: Path) -> tuple[Paths, Lakehouse]:
    (tmp / "data").mkdir(parents=True)
    with_policy(tmp)
    paths = Paths.at(tmp)
    return paths, Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")


def _hashes(lh: Lakehouse) -> dict[str, str]:
    names = lh.catalog.names("silver") + lh.catalog.names("quarantine")
    return {
        n: frame_hash(lh.read(n).drop(BOOKKEEPING, strict=False)) for n in names if lh.exists(n)
    }


def test_chunks_by_bytes_and_streamed_keys_give_the_one_pass_result(landing, tmp_path, monkeypatch):
    """One file per chunk over two runs = one chunk in one run: same silver, same quarantine."""
    landing, original = landing
    paths, one = _root(tmp_path / "one")
    shutil.copytree(landing, paths.data, dirs_exist_ok=True)
    ingest(paths.data, one)
    silver.build(one, OPTIONS)
    want = _hashes(one)

    paths, two = _root(tmp_path / "two")
    files = sorted(p for p in landing.rglob("*") if p.is_file())
    early = [p for p in files if p.name != DUP_NAME][: len(files) // 2]
    calls = []
    real = silver.process

    def counted(batch, *a, **k):
        calls.append(batch["_source_file"].n_unique())
        return real(batch, *a, **k)

    monkeypatch.setattr(silver, "CHUNK_BYTES", 1)  # every file a chunk of its own
    monkeypatch.setattr(silver, "process", counted)
    for batch in (early, files):
        for p in batch:
            (paths.data / p.relative_to(landing)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, paths.data / p.relative_to(landing))
        ingest(paths.data, two)
        silver.build(two, OPTIONS)
    assert calls and max(calls) == 1 and len(calls) > 5, calls
    got = _hashes(two)
    assert got == want
    # the file landed twice: each row of its first copy accepted or a duplicate there comes
    # back as a duplicate (its malformed rows are quarantined again by their own rule)
    q = two.read("quarantine.rows").filter(pl.col("rule") == "duplicate")
    dups = q.group_by("source_file").len().rows()
    accepted = two.read("silver.events").filter(pl.col("_source_file") == original).height
    again = dict(dups).get("events/" + DUP_NAME, 0)
    assert accepted > 100 and again == accepted + dict(dups).get(original, 0), (accepted, dups)
    # a table with a composite key (plants: plant_id, updated_at) went through the join
    assert any(len(c.primary_key) > 1 for c in two.catalog.landed())
    assert all(c["reconciles"] for c in silver.reconcile(two))


def test_existing_keys_are_filtered_to_the_batch_keys(tmp_path):
    """A scan of silver's keys comes back holding only the keys the batch repeats."""
    contract = Catalog.load().get("silver.events")
    existing = pl.LazyFrame({"event_id": [f"e{i}" for i in range(1000)]})
    batch = pl.DataFrame({"event_id__t": ["e5", "e999", "new"]})
    got = silver._matching_keys(existing, batch, contract)
    assert sorted(got["event_id"]) == ["e5", "e999"]
    plants = Catalog.load().get("silver.plants")
    existing = pl.LazyFrame({"plant_id": ["p1", "p1", "p2"], "updated_at": [1, 2, 1]})
    batch = pl.DataFrame({"plant_id__t": ["p1", "p2"], "updated_at__t": [2, 2]})
    got = silver._matching_keys(existing, batch, plants)
    assert got.rows() == [("p1", 2)]


def test_chunks_hold_whole_files_within_rows_and_bytes():
    """A chunk closes before it passes chunk_rows or chunk_bytes; one file may pass both."""
    files = pl.DataFrame(
        {"_source_file": ["a", "b", "c", "d"], "n": [5, 5, 50, 1], "bytes": [10, 10, 10, 900]}
    )
    assert silver._chunks(files, 10, 1000) == [["a", "b"], ["c"], ["d"]]
    assert silver._chunks(files, 100, 25) == [["a", "b"], ["c"], ["d"]]
    assert silver._chunks(files, 100, 500) == [["a", "b", "c"], ["d"]]


def test_content_hash_streamed_in_batches_is_the_hash_of_the_whole_table(landing, tmp_path):
    """pin_tables' hash is streamed (memory: one batch); any split gives the whole's hash."""
    from hortus.lakehouse.tables import frames_hash

    landing, _ = landing
    paths, lh = _root(tmp_path)
    shutil.copytree(landing, paths.data, dirs_exist_ok=True)
    ingest(paths.data, lh)
    chunks = silver.chunk_sizes(lh, 300)  # what the build below will take: every bronze row
    landed = sum(lh.read("bronze." + c.name).height for c in lh.catalog.landed())
    assert len(chunks) > 3 and sum(n for _, n in chunks) == landed
    assert silver.memory_bound_mb(chunks) > silver.memory_bound_mb([]) == silver.BOUND_FIXED_MB
    silver.build(lh, OPTIONS, chunk_rows=300)  # several commits, several files
    assert silver.chunk_sizes(lh, 300) == []  # nothing left to process
    for name in ("bronze.events", "silver.events", "silver.plants", "quarantine.rows"):
        whole = frame_hash(lh.read(name))
        lf = lh.scan(name)
        tiny = frames_hash(lf.collect_batches(chunk_size=7), lf.collect_schema().names())
        assert lh.content_hash(name) == whole == tiny, name
