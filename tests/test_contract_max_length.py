"""String columns have a maximum length: an overlong value is quarantined (issue 18 item 1).

The contracts give every string column of a landed table a default maximum length
(`DEFAULT_MAX_LENGTH` characters) and ids a smaller declared one; ingest + silver put a
row breaking it in quarantine with the rule `max_length`, the column and the limit.
"""

from __future__ import annotations

import polars as pl

from conftest import TEST_KEY, USERS_HEADER, event, user_row, write_jsonl
from hortus.lakehouse import silver
from hortus.lakehouse.contracts import DEFAULT_MAX_LENGTH
from hortus.lakehouse.ingest import ingest

OPTIONS = silver.SilverOptions(key=TEST_KEY.encode())


def test_overlong_values_are_quarantined_naming_column_and_limit(project, lakehouse):
    """Check a 100-character order_id (limit 64) and a 5,000-character name (default 4096)."""
    long_id = "o" + "9" * 99
    rows = [
        event(1),
        event(2, event_type="order", order_id=long_id, quantity=1, price=3.5),
        event(3, event_type="order", order_id="o" + "1" * 63, quantity=1, price=3.5),  # 64: ok
    ]
    write_jsonl(project.data / "events/events-2025-03-01.jsonl.gz", rows)
    users = project.data / "users/users-2025-03-01.csv"
    users.parent.mkdir(parents=True)
    users.write_text(
        "\n".join([USERS_HEADER, user_row(1), user_row(2, name="N" * 5000), user_row(3)]) + "\n"
    )
    ingest(project.data, lakehouse)
    tables = {t["table"]: t for t in silver.build(lakehouse, OPTIONS)}
    assert (tables["silver.events"]["accepted"], tables["silver.events"]["quarantined"]) == (2, 1)
    assert (tables["silver.users"]["accepted"], tables["silver.users"]["quarantined"]) == (2, 1)
    q = lakehouse.read("quarantine.rows").sort("table")
    assert q.select("table", "line", "rule", "column").rows() == [
        ("silver.events", 2, "max_length", "order_id"),
        ("silver.users", 3, "max_length", "name"),
    ]
    assert q["message"].to_list() == [
        "order_id: value of 100 characters is longer than the maximum length 64",
        f"name: value of 5000 characters is longer than the maximum length {DEFAULT_MAX_LENGTH}",
    ]
    accepted = lakehouse.read("silver.events")
    assert accepted.filter(pl.col("order_id").str.len_chars() > 64).height == 0
    for check in silver.reconcile(lakehouse):
        assert check["reconciles"], check
