"""Review redaction does not depend on the order in which files arrive (issue 18, item 6).

A review processed before its author's users file arrived kept the author's raw name in
silver.reviews until a full rebuild.  Now the run that processes new customers first sends
back the silver batches whose text holds one of their identifiers (one audited Delta
delete), then processes them again with every identifier known
(`hortus.lakehouse.silver.redact_again`).
"""

from __future__ import annotations

import polars as pl
import pytest

from conftest import TEST_KEY, USERS_HEADER, user_row, write_jsonl
from hortus.governance.audit import AuditLog, default_path
from hortus.lakehouse import silver
from hortus.lakehouse.ingest import ingest

OPTIONS = silver.SilverOptions(key=TEST_KEY.encode())
SECRETS = ("Jane Doe1", "Jane Doe2", "Jane Doe3")
COMPARED = ["review_id", "user_id", "plant_id", "rating", "text", "ts", "_source_file", "_line"]


def _review(i: int, text: str, user: int = 1) -> dict:
    return {
        "review_id": f"r{i:07d}",
        "user_id": f"u{user:06d}",
        "plant_id": "p0001",
        "rating": 4,
        "text": text,
        "ts": "2025-03-01T10:00:00.000000Z",
    }


def _write_reviews(project) -> None:
    write_jsonl(
        project.data / "reviews/reviews-2025-03-01.jsonl",
        [
            _review(1, "Great fern, Jane Doe1 here."),
            _review(2, "My neighbour Jane Doe2 loves it", user=2),
            _review(3, "No names at all", user=3),
            '{"review_id": "r00000',  # malformed: quarantined, stays quarantined once
        ],
    )
    write_jsonl(
        project.data / "reviews/reviews-2025-03-02.jsonl",
        [_review(4, "Jane Doe3 again"), _review(1, "duplicate key of review 1")],
    )


def _write_users(project, ids=(1, 2, 3), day: str = "2025-03-01") -> None:
    (project.data / "users").mkdir(exist_ok=True)
    lines = [USERS_HEADER] + [user_row(i) for i in ids]
    (project.data / "users" / f"users-{day}.csv").write_text("\n".join(lines) + "\n")


def _run(project, lakehouse) -> dict:
    ingest(project.data, lakehouse)
    return {t["table"]: t for t in silver.build(lakehouse, OPTIONS)}


def _reviews(lakehouse) -> pl.DataFrame:
    return lakehouse.read("silver.reviews").select(COMPARED).sort("review_id")


def _check(lakehouse) -> pl.DataFrame:
    reviews = _reviews(lakehouse)
    for text in reviews["text"]:
        assert not any(secret in text for secret in SECRETS), text
    assert reviews["review_id"].is_unique().all()
    for check in silver.reconcile(lakehouse):
        assert check["reconciles"], check
    q = lakehouse.read("quarantine.rows").filter(pl.col("table") == "silver.reviews")
    assert sorted(q["rule"]) == ["duplicate", "json"]
    return reviews


@pytest.fixture
def users_first(tmp_path_factory):
    """The content of silver.reviews when the users file arrived first (the reference)."""
    from conftest import with_policy
    from hortus.config import Paths
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.tables import Lakehouse

    paths = Paths.at(tmp_path_factory.mktemp("users_first"))
    (paths.data).mkdir()
    with_policy(paths.root)
    lh = Lakehouse(paths=paths, catalog=Catalog.load(), stage="test", user="pipeline")
    _write_users(paths)
    _run(paths, lh)
    _write_reviews(paths)
    _run(paths, lh)
    return _check(lh)


@pytest.mark.parametrize("order", ["reviews first", "same run", "users first"])
def test_review_redaction_is_the_same_whatever_the_arrival_order(
    order, project, lakehouse, users_first
):
    """Check both orders (and both at once) end with the same redacted silver.reviews."""
    if order == "reviews first":
        _write_reviews(project)
        _run(project, lakehouse)
        assert "Jane Doe1" in " ".join(_reviews(lakehouse)["text"])  # not known yet
        _write_users(project)
        tables = _run(project, lakehouse)
        assert sorted(tables["silver.reviews"]["redacted_again"]) == sorted(
            set(lakehouse.read("silver.reviews")["_batch_id"])
        )
    elif order == "same run":
        _write_reviews(project)
        _write_users(project)
        _run(project, lakehouse)
    else:
        _write_users(project)
        _run(project, lakehouse)
        _write_reviews(project)
        tables = _run(project, lakehouse)
        assert "redacted_again" not in tables["silver.reviews"]
    assert _check(lakehouse).equals(users_first)


def test_redacting_again_is_an_audited_commit_and_happens_once(project, lakehouse):
    """Check the delete is in the table history and the audit log, and is not repeated."""
    _write_reviews(project)
    _run(project, lakehouse)
    _write_users(project, ids=(1,))
    first = _run(project, lakehouse)["silver.reviews"]
    assert len(first["redacted_again"]) == 1
    history = lakehouse.history("silver.reviews")
    deletes = history.filter(pl.col("operation") == "DELETE")
    assert deletes.height == 1
    log = AuditLog.open(default_path(lakehouse.paths), secrets_dir=lakehouse.paths.root).show()
    audited = log.filter((pl.col("action") == "delete") & (pl.col("object") == "silver.reviews"))
    # one delete sends the batch back; its quarantined rows are then undone as after a crash
    assert audited.filter(pl.col("detail").str.contains("redact again")).height == 1
    # a later customer whose name no review holds sends nothing back
    _write_users(project, ids=(7,), day="2025-03-02")
    assert "redacted_again" not in _run(project, lakehouse)["silver.reviews"]
    # another author named in a review: sent back again, then done
    _write_users(project, ids=(2, 3), day="2025-03-03")
    assert "redacted_again" in _run(project, lakehouse)["silver.reviews"]
    assert "redacted_again" not in silver.build(lakehouse, OPTIONS)[0]
    _check(lakehouse)


def test_a_crash_after_sending_back_is_recovered(project, lakehouse, monkeypatch, users_first):
    """Check a run killed between the delete and the new commit converges on the next run."""
    _write_reviews(project)
    _run(project, lakehouse)
    _write_users(project)
    ingest(project.data, lakehouse)
    real_write = lakehouse.write

    def killed(name, df, **kw):
        if name == "silver.reviews":
            raise KeyboardInterrupt("killed after the delete, before the new commit")
        return real_write(name, df, **kw)

    monkeypatch.setattr(lakehouse, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        silver.build(lakehouse, OPTIONS)
    monkeypatch.setattr(lakehouse, "write", real_write)
    silver.build(lakehouse, OPTIONS)
    assert _check(lakehouse).equals(users_first)
