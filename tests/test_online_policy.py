"""Online lookups under the access policy: grants, masking as in the table API, audit records.

Real components: the shop's feature logs, a SQLite online store in a project with the
repository's access_policy.yaml, the audit log on disk, the CLI in-process.
"""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest

from conftest import with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.domains.plantshop.features import FEATURES
from hortus.errors import UnknownEntity
from hortus.features import store as fsm
from hortus.features.online import AUDIT_OBJECT, open_online
from hortus.governance.access import AccessDenied
from hortus.governance.audit import AuditLog, default_path

PROTECTED = ("user_profile__region", "user_profile__age_band")  # feature order


@pytest.fixture
def online(shop, tmp_path):
    """Return (paths, user, plant): a project with the policy and the shop's online store."""
    with_policy(tmp_path)
    paths = Paths.at(tmp_path)
    end = shop.scan("silver.events").select(pl.col("ts").max()).collect().item()
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    contracts = {c.full_name: c for c in shop.catalog}
    store.materialize(fsm.read_logs(shop, FEATURES), end + timedelta(microseconds=1), contracts)
    store.close()
    keys = shop.read("silver.events").drop_nulls(["user_id", "plant_id"]).row(0, named=True)
    return paths, keys["user_id"], keys["plant_id"]


def _audit(paths: Paths) -> pl.DataFrame:
    return AuditLog.open(default_path(paths), secrets_dir=paths.secrets).show()


def test_lookup_masks_what_the_user_may_not_unmask_and_audits_each_call(online):
    """Check mia (ml-engineer) gets tokens for the sensitive profile, sam (data scientist) not.

    The masked strings are the table API's tokens: a read of gold.fs_user_profile by mia
    shows the same token for the same value.
    """
    paths, user, plant = online
    req = {"user_id": user, "plant_id": plant}
    raw = fsm.OnlineStore(paths.online_store, FEATURES).get_vector(req)
    assert all(raw[f] is not None and not raw[f].startswith("tok_") for f in PROTECTED)
    with open_online(paths.root, FEATURES, user="sam") as sam:
        assert sam.masked == [] and sam.get_vector(req) == raw
    with open_online(paths.root, FEATURES, user="mia") as mia:
        assert mia.masked == list(PROTECTED)
        got = mia.get_vectors([req, req], purpose="test")
        assert got[0] == got[1]
        for f in PROTECTED:
            assert got[0][f].startswith("tok_") and got[0][f] != raw[f]
        assert {k: v for k, v in got[0].items() if k not in PROTECTED} == {
            k: v for k, v in raw.items() if k not in PROTECTED
        }
    # same masking function as the table API: the token equals a masked table read's
    from hortus.governance.access import mask_expr
    from hortus.lakehouse.pii import load_key

    key = load_key(paths.secrets)
    want = pl.DataFrame({"v": [raw["user_profile__region"]]}).select(
        mask_expr("v", string=True, key=key)
    )["v"][0]
    assert got[0]["user_profile__region"] == want
    log = _audit(paths).filter(pl.col("object") == AUDIT_OBJECT)
    by_user = dict(log.group_by("user").len().iter_rows())
    assert by_user == {"sam": 1, "mia": 1}  # one record per lookup call
    mia_row = log.filter(pl.col("user") == "mia").row(0, named=True)
    assert "entities=2" in mia_row["detail"] and "user_profile__region" in mia_row["detail"]
    assert "purpose=test" in mia_row["detail"] and mia_row["outcome"] == "allowed"


@pytest.mark.parametrize("user", ["alex", "zed"])
def test_lookup_is_denied_without_read_on_the_feature_tables_and_the_denial_audited(online, user):
    """Check an analyst (no grant on gold.fs_*) and a user not in the policy are refused."""
    paths, _, _ = online
    with pytest.raises(AccessDenied, match=r"may not read 'gold\.fs_"):
        open_online(paths.root, FEATURES, user=user)
    denied = _audit(paths).filter((pl.col("user") == user) & (pl.col("outcome") == "denied"))
    assert denied.height == 1 and denied["object"][0].startswith("gold.fs_")


def test_unknown_entity_is_an_error_of_the_wrapper_and_audited(online):
    """Check an unknown user raises UnknownEntity through the wrapper, and the call is recorded."""
    paths, _, plant = online
    with open_online(paths.root, FEATURES, user="mia") as mia, pytest.raises(UnknownEntity) as err:
        mia.get_vector({"user_id": "u999999", "plant_id": plant})
    assert err.value.entity == {"user_id": "u999999"}
    rows = _audit(paths).filter(pl.col("object") == AUDIT_OBJECT)
    assert rows.height == 1 and "unknown entity" in rows["detail"][0]


def test_cli_lookup_goes_through_the_policy(online, capsys, monkeypatch):
    """Check `hortus features lookup`: masked for mia, refused for alex, unknown entity exit 2."""
    paths, user, plant = online
    base = ["--root", str(paths.root), "features", "lookup", "--key", f"user_id={user}"]
    monkeypatch.setenv("HORTUS_USER", "mia")
    assert main([*base, "--key", f"plant_id={plant}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["masked"] == list(PROTECTED)
    assert out["features"]["user_profile__region"].startswith("tok_")
    monkeypatch.setenv("HORTUS_USER", "alex")
    assert main([*base, "--key", f"plant_id={plant}"]) == 2
    err = capsys.readouterr().err
    assert "access denied" in err and "gold.fs_" in err and "Traceback" not in err
    monkeypatch.setenv("HORTUS_USER", "mia")
    unknown = ["--root", str(paths.root), "features", "lookup", "--key", "user_id=u999999"]
    assert main([*unknown, "--key", f"plant_id={plant}"]) == 2
    err = capsys.readouterr().err
    assert "u999999" in err and "hortus features keys user_profile" in err
    assert (
        main(["--root", str(paths.root), "features", "keys", "user_profile", "--limit", "3"]) == 0
    )
    assert capsys.readouterr().out.count("user_id=") == 3


def test_row_filter_of_a_feature_table_hides_the_entities_it_does_not_pass(online):
    """Check a group whose read of gold.fs_user_profile is filtered by region sees only those users.

    A user of another region is unknown to it (as a filtered table read returns no row);
    a user of its region is served, the region masked (no unmask grant).
    """
    import yaml

    from conftest import POLICY
    from hortus.governance.access import Policy
    from hortus.lakehouse.catalog import Catalog
    from hortus.lakehouse.tables import Lakehouse

    paths, _, plant = online
    store = fsm.OnlineStore(paths.online_store, FEATURES)
    users = [k["user_id"] for k in store.entity_keys("user_profile", limit=200)]
    regions = {u: store.get_group("user_profile", (u,))["user_profile__region"] for u in users}
    mine = sorted(regions.values())[0]
    inside = next(u for u, r in regions.items() if r == mine)
    outside = next(u for u, r in regions.items() if r != mine)
    doc = yaml.safe_load(POLICY.read_text())
    doc["users"]["rita"] = ["regional"]
    doc["groups"]["regional"] = {
        "description": "regional feature readers",
        "tables": {"read": ["gold.fs_*"]},
        "row_filters": [
            {
                "tables": ["gold.fs_user_profile"],
                "column": "latest_region",
                "op": "in",
                "values": [mine],
            }
        ],  # fmt: skip
    }
    policy = Policy.from_bytes(yaml.safe_dump(doc).encode(), source="test policy")
    lh = Lakehouse(paths=paths, catalog=Catalog.load(root=paths.root), policy=policy, user="rita")
    with open_online(lh, FEATURES, user="rita", store=store) as rita:
        vec = rita.get_vector({"user_id": inside, "plant_id": plant})
        assert vec["user_profile__region"].startswith("tok_")
        with pytest.raises(UnknownEntity) as err:
            rita.get_vector({"user_id": outside, "plant_id": plant})
    assert err.value.entity == {"user_id": outside}
