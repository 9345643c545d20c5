"""Modeling layer: training, metrics, time split, deterministic artifacts and signatures.

Everything here runs on a synthetic loan-application table (not the plant shop)
to show the layer is generic: applicants are ranked by default risk within a
branch-day, the truly informative feature is the debt ratio.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.metrics import ndcg_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from hortus.errors import ArtifactError, HortusError, SignatureError
from hortus.lakehouse.contracts import Contract
from hortus.models.modeling import (
    ModelSpec,
    Signature,
    build_pipeline,
    evaluate,
    load_model,
    predict_scores,
    ranking_metrics,
    save_model,
    score_frame,
    time_split,
    to_model_input,
    train,
)

REGIONS = ("north", "south", "east", "west", "central")
AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "65+")
METRICS = (
    "roc_auc",
    "log_loss",
    "average_precision",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "n",
    "positives",
    "base_rate",
)
UNIT_METRICS = (
    "roc_auc",
    "average_precision",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "base_rate",
)

LOANS = Contract.from_dict(
    "loan_applications",
    {
        "layer": "silver",
        "owner": "credit-risk",
        "primary_key": ["application_id"],
        "columns": {
            "application_id": {"type": "string", "nullable": False},
            # "islands" is a valid region that never occurs in the training data
            "region": {"type": "string", "nullable": False, "allowed": [*REGIONS, "islands"]},
            "age_band": {"type": "string", "nullable": False},
            "income": {"type": "float", "min": 0},
            "debt_ratio": {"type": "float", "nullable": False, "min": 0, "max": 1.5},
            "months_at_address": {"type": "int", "nullable": False, "min": 0},
            "applied_at": {"type": "datetime", "nullable": False},
            "branch_day": {"type": "string", "nullable": False},
            "defaulted": {"type": "int", "nullable": False, "allowed": [0, 1]},
        },
    },
)
SPEC = ModelSpec(
    target="defaulted",
    features=("region", "age_band", "income", "debt_ratio", "months_at_address"),
    categorical=("region", "age_band"),
    time="applied_at",
    group="branch_day",
    segments=("region",),
    k=5,
    seed=3,
    params={"max_iter": 60},
)


def loan_applications(n: int = 6000, seed: int = 7) -> pl.DataFrame:
    """Return a seeded synthetic loan table; default risk is driven mostly by debt ratio."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 120 * 86_400, n))
    region = rng.choice(len(REGIONS), n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    age = rng.integers(0, len(AGE_BANDS), n)
    income = np.round(rng.lognormal(10.3, 0.5, n), 2)
    debt = np.clip(rng.beta(2, 4, n) * 1.5, 0, 1.5)
    logit = (
        -3.0
        + 6.0 * debt
        - 0.5 * np.log(income / 30_000)
        + np.array([0.0, 0.4, -0.3, 0.2, 0.0])[region]
        + np.array([0.5, 0.2, 0.0, -0.2, 0.1])[age]
    )
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "application_id": [f"a{i:06d}" for i in range(n)],
            "region": np.array(REGIONS)[region],
            "age_band": np.array(AGE_BANDS)[age],
            "income": income,
            "debt_ratio": debt,
            "months_at_address": rng.integers(0, 240, n),  # uninformative
            "applied_at": [start + timedelta(seconds=int(s)) for s in seconds],
            "branch": rng.integers(1, 9, n),
            "defaulted": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64),
        }
    ).with_columns(
        branch_day=pl.format("b{}-{}", pl.col("branch"), pl.col("applied_at").dt.date()),
        # 2% of incomes are missing
        income=pl.when(pl.int_range(pl.len()) % 50 == 7).then(None).otherwise("income"),
    )


@pytest.fixture(scope="module")
def loans() -> pl.DataFrame:
    """Return the synthetic loan table (shared read-only)."""
    return loan_applications()


@pytest.fixture(scope="module")
def result(loans):
    """Return the default model trained once on the loan table."""
    return train(loans, SPEC, contracts=[LOANS])


# ---------------------------------------------------------------- training and metrics


def test_train_ranks_loan_defaults_well_on_the_time_holdout(loans, result):
    """Check that a generic (non-plant) table trains and evaluates through the same API."""
    m = result.metrics
    assert set(METRICS) <= set(m)
    assert m["roc_auc"] > 0.75
    for key in UNIT_METRICS:
        assert 0 <= m[key] <= 1, key
    assert 0 < m["log_loss"] < math.log(2)  # better than a coin flip
    assert m["average_precision"] > m["base_rate"]
    assert m["n"] == result.n_test and result.n_train + result.n_test == loans.height
    assert abs(result.n_test / loans.height - SPEC.holdout_fraction) < 0.03
    assert m["positives"] == result.predictions["defaulted"].sum()
    assert result.train_metrics["roc_auc"] >= m["roc_auc"]  # in-sample is not worse
    assert result.predictions["applied_at"].min() >= result.cutoff
    assert set(result.predictions.columns) == {
        "branch_day",
        "applied_at",
        "region",
        "defaulted",
        "score",
    }


def test_segment_metrics_report_every_region_of_the_holdout(result):
    """Check that segment metrics have one row per region and add up to the hold-out."""
    seg = result.segment_metrics
    assert seg["segment"].unique().to_list() == ["region"]
    assert sorted(seg["value"].to_list()) == sorted(REGIONS)
    assert seg["n"].sum() == result.n_test
    assert seg["positives"].sum() == result.metrics["positives"]
    assert (seg["roc_auc"] > 0.6).all()
    for key in ("precision_at_k", "recall_at_k", "ndcg_at_k"):
        assert seg[key].is_between(0, 1).all()


def test_permutation_importance_ranks_the_informative_feature_first(result):
    """Check that debt ratio, which drives the label, has by far the largest importance."""
    imp = result.importance
    assert imp.columns == ["feature", "importance_mean", "importance_std"]
    assert sorted(imp["feature"].to_list()) == sorted(SPEC.features)
    assert imp["feature"][0] == "debt_ratio"
    assert imp["importance_mean"][0] > 5 * imp["importance_mean"][1]


def test_learning_curve_refits_on_growing_time_prefixes(result):
    """Check that the learning curve has 5 growing sizes, each scored on train and hold-out."""
    curve = result.learning_curve
    sizes = curve["train_rows"].unique(maintain_order=True).to_list()
    assert len(sizes) == 5 and sizes == sorted(sizes) and sizes[-1] == result.n_train
    assert (
        curve.group_by("train_rows").agg(pl.col("split").sort())["split"].to_list()
        == [["holdout", "train"]] * 5
    )
    assert curve["roc_auc"].is_between(0, 1).all() and (curve["log_loss"] > 0).all()
    full = curve.filter(pl.col("train_rows") == result.n_train, pl.col("split") == "holdout")
    assert full["roc_auc"][0] == pytest.approx(result.metrics["roc_auc"], abs=1e-12)


def test_evaluate_matches_the_holdout_metrics_of_train(loans, result):
    """Check that evaluate() on the hold-out rows reproduces train()'s metrics."""
    _, test, _ = time_split(loans, SPEC)
    again = evaluate(result.pipeline, test.drop("applied_at"), SPEC)  # time is not needed
    for key in METRICS:
        assert again[key] == pytest.approx(result.metrics[key], abs=1e-12), key


def test_logreg_estimator_trains_scores_and_round_trips(tmp_path, loans):
    """Check that the logistic-regression path trains, ranks debt ratio first and saves."""
    spec = ModelSpec(**{**SPEC.__dict__, "estimator": "logreg", "params": {"C": 1.0}})
    res = train(loans, spec, contracts=[LOANS], curve_points=2, importance_repeats=2)
    assert res.metrics["roc_auc"] > 0.75
    assert res.importance["feature"][0] == "debt_ratio"
    digest = save_model(res.pipeline, res.signature, tmp_path / "logreg.skops")
    pipeline, _ = load_model(tmp_path / "logreg.skops", digest)
    assert np.array_equal(
        predict_scores(pipeline, loans, spec), predict_scores(res.pipeline, loans, spec)
    )


def test_nulls_reach_the_estimator_as_missing_not_as_a_category(result, loans):
    """Check that a null category and a null number become NaN after the encoder."""
    frame = loans.head(2).with_columns(
        region=pl.Series([None, "islands"], dtype=pl.String), income=pl.Series([None, 1.0])
    )
    x = to_model_input(frame, SPEC)
    assert isinstance(x[0, 0], float) and math.isnan(x[0, 0]) and math.isnan(x[0, 2])
    encoded = result.pipeline[0].transform(x)
    assert np.isnan(encoded[0, 0]).all() and np.isnan(encoded[1, 0])  # null and unknown
    assert predict_scores(result.pipeline, frame, SPEC).shape == (2,)


def test_model_spec_rejects_inconsistent_settings():
    """Check that a spec naming non-features as categorical or seeds in params is refused."""
    with pytest.raises(HortusError, match=r"categorical \['zip'\] are not features"):
        ModelSpec(target="y", features=("a",), categorical=("zip",))
    with pytest.raises(HortusError, match="random_state"):
        ModelSpec(target="y", features=("a",), params={"random_state": 1})
    with pytest.raises(HortusError, match="holdout_fraction"):
        ModelSpec(target="y", features=("a",), holdout_fraction=1.0)
    with pytest.raises(HortusError, match=r"unknown HistGradientBoostingClassifier.*'depth'"):
        build_pipeline(ModelSpec(target="y", features=("a",), params={"depth": 3}))
    frame = pl.DataFrame({"t": range(10), "y": [0.0, 1.0, 0.5, 0.0, 1.0] * 2, "a": [0.0] * 10})
    with pytest.raises(HortusError, match=r"target 'y' must be 0/1, found \[0.5\]"):
        train(frame, ModelSpec(target="y", features=("a",), time="t"))


# ---------------------------------------------------------------- ranking metrics


def test_ranking_metrics_match_a_hand_computed_example():
    """Check precision@2, recall@2 and NDCG@2 against values worked out by hand.

    Group a: ranked labels 0,1 | 0,1 -> P=1/2, R=1/2, NDCG=(1/log2 3)/(1+1/log2 3).
    Group b: ranked labels 1,0 | 0   -> P=1/2, R=1,   NDCG=1.
    Group c: no positive             -> left out of every mean.
    Group d: one item, positive      -> P=1/min(2,1)=1, R=1, NDCG=1.
    """
    frame = pl.DataFrame(
        {
            "g": ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"],
            "y": [0, 1, 0, 1, 1, 0, 0, 0, 0, 1],
            "s": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.9, 0.8, 0.1],
        }
    )
    m = ranking_metrics(frame, "g", "y", "s", k=2)
    ndcg_a = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["precision_at_k"] == pytest.approx((0.5 + 0.5 + 1) / 3, abs=1e-12)
    assert m["recall_at_k"] == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-12)
    assert m["ndcg_at_k"] == pytest.approx((ndcg_a + 1 + 1) / 3, abs=1e-12)
    assert (m["groups"], m["groups_with_positives"]) == (4, 3)
    # row order does not matter
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1)
    assert ranking_metrics(shuffled, "g", "y", "s", k=2) == pytest.approx(m, abs=1e-12)


def test_ranking_metrics_break_ties_pessimistically_whatever_the_row_order():
    """Check that a positive tied with a negative is ranked after it, in either row order."""
    for labels in ([1, 0], [0, 1]):
        frame = pl.DataFrame({"g": [1, 1], "y": labels, "s": [0.5, 0.5]})
        m = ranking_metrics(frame, "g", "y", "s", k=1)
        assert (m["precision_at_k"], m["recall_at_k"], m["ndcg_at_k"]) == (0.0, 0.0, 0.0)
        m2 = ranking_metrics(frame, "g", "y", "s", k=2)  # positive at rank 2
        assert m2["ndcg_at_k"] == pytest.approx(1 / math.log2(3), abs=1e-12)


def test_ranking_metrics_agree_with_sklearn_and_a_direct_loop():
    """Check NDCG@k against sklearn.metrics.ndcg_score and P/R@k against a per-group loop."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(2, 13, 300)
    g = np.repeat(np.arange(len(sizes)), sizes)
    y = (rng.random(len(g)) < 0.25).astype(int)
    s = rng.random(len(g))
    frame = pl.DataFrame({"g": g, "y": y, "s": s})
    for k in (1, 3, 5, 20):
        ndcg, prec, rec = [], [], []
        for grp in range(len(sizes)):
            yy, ss = y[g == grp], s[g == grp]
            if yy.sum() == 0:
                continue
            ndcg.append(ndcg_score([yy], [ss], k=k))
            top = yy[np.argsort(-ss)][:k]
            prec.append(top.sum() / min(k, len(yy)))
            rec.append(top.sum() / yy.sum())
        m = ranking_metrics(frame, "g", "y", "s", k=k)
        assert m["groups_with_positives"] == len(ndcg)
        assert abs(m["ndcg_at_k"] - np.mean(ndcg)) < 1e-9
        assert abs(m["precision_at_k"] - np.mean(prec)) < 1e-9
        assert abs(m["recall_at_k"] - np.mean(rec)) < 1e-9


# ---------------------------------------------------------------- time split


def test_time_split_keeps_groups_whole_on_the_side_of_their_first_time():
    """Check that no group is split and every hold-out group starts at or after the cut-off."""
    rng = np.random.default_rng(5)
    n = 2000
    start = datetime(2024, 1, 1, tzinfo=UTC)
    frame = pl.DataFrame(
        {
            "t": [start + timedelta(hours=int(h)) for h in rng.integers(0, 24 * 90, n)],
            "g": rng.integers(0, 300, n),  # groups span weeks, so many straddle the cut-off
            "y": rng.integers(0, 2, n),
            "x": rng.random(n),
        }
    )
    spec = ModelSpec(target="y", features=("x",), time="t", group="g", holdout_fraction=0.25)
    tr, te, cutoff = time_split(frame, spec)
    assert tr.height + te.height == n and abs(te.height / n - 0.25) < 0.05
    assert not set(tr["g"]) & set(te["g"])
    first = lambda f: f.group_by("g").agg(pl.col("t").min())["t"]  # noqa: E731
    assert first(te).min() >= cutoff > first(tr).max()
    assert te["t"].min() >= cutoff  # no hold-out row before the cut-off
    assert tr["t"].max() > cutoff  # whole groups, not rows, were moved
    without_time = ModelSpec(target="y", features=("x",), group="g", seed=1)
    a_tr, a_te, none = time_split(frame, without_time)
    b_tr, b_te, _ = time_split(frame, without_time)
    assert none is None and a_te.equals(b_te) and not set(a_tr["g"]) & set(a_te["g"])


def test_time_split_refuses_a_frame_without_time_before_the_cutoff():
    """Check that a split with no training rows is refused rather than returned empty."""
    frame = pl.DataFrame({"t": [1] * 9 + [2], "y": [0, 1] * 5, "x": [0.0] * 10})
    with pytest.raises(HortusError, match="no training rows before the cut-off"):
        time_split(frame, ModelSpec(target="y", features=("x",), time="t"))


# ---------------------------------------------------------------- artifacts


def test_training_twice_saves_byte_identical_artifacts(tmp_path, loans, result):
    """Check that two trainings give identical .skops bytes that load and predict the same."""
    again = train(loans, SPEC, contracts=[LOANS], curve_points=1, importance_repeats=1)
    meta = {"spec": SPEC.to_dict(), "cutoff": result.cutoff}
    h1 = save_model(result.pipeline, result.signature, tmp_path / "a" / "m.skops", metadata=meta)
    h2 = save_model(again.pipeline, again.signature, tmp_path / "b" / "m.skops", metadata=meta)
    a = (tmp_path / "a" / "m.skops").read_bytes()
    assert h1 == h2 == hashlib.sha256(a).hexdigest()
    assert a == (tmp_path / "b" / "m.skops").read_bytes()
    assert (tmp_path / "a/m.signature.json").read_bytes() == (
        tmp_path / "b/m.signature.json"
    ).read_bytes()
    with zipfile.ZipFile(io.BytesIO(a)) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert z.namelist() == sorted(z.namelist())
    # the normalised archive is still a valid skops file
    assert isinstance(sio.loads(a, trusted=sio.get_untrusted_types(data=a)), Pipeline)
    pipeline, signature = load_model(tmp_path / "a" / "m.skops", expected_sha256=h1)
    assert signature == result.signature
    assert np.array_equal(
        predict_scores(pipeline, loans, SPEC), predict_scores(result.pipeline, loans, SPEC)
    )
    side = json.loads((tmp_path / "a/m.signature.json").read_text())
    assert side["model_sha256"] == h1 and side["metadata"]["spec"]["target"] == "defaulted"


@pytest.mark.parametrize("offset", [0, -1000], ids=["zip-header", "array-payload"])
def test_load_model_refuses_a_corrupted_artifact_before_deserialising(tmp_path, result, offset):
    """Check that one flipped byte is refused with the expected and actual hashes.

    Flipping the first byte breaks the zip itself: deserialising would fail with a
    different error, so the hash message shows the check ran first.  Flipping a
    byte of an array payload would load silently; the hash still refuses it.
    """
    path = tmp_path / "m.skops"
    digest = save_model(result.pipeline, result.signature, path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(
        ArtifactError, match=rf"m\.skops: sha256 mismatch, expected {digest}, actual {actual}"
    ):
        load_model(path, expected_sha256=digest)
    # without an expected hash, the one recorded beside the model refuses it too
    with pytest.raises(
        ArtifactError,
        match=rf"expected {digest} \(recorded in m\.signature\.json\), actual {actual}",
    ):
        load_model(path)


def test_artifacts_with_untrusted_types_are_neither_saved_nor_loaded(tmp_path, result):
    """Check that a model holding a non-sklearn/numpy callable is refused on save and load."""
    evil = Pipeline([("f", FunctionTransformer(json.dumps))])
    with pytest.raises(ArtifactError, match=r"untrusted type\(s\) \['json.dumps'\]"):
        save_model(evil, result.signature, tmp_path / "evil.skops")
    assert list(tmp_path.iterdir()) == []
    data = sio.dumps(evil)
    (tmp_path / "evil.skops").write_bytes(data)
    side = result.signature.to_dict() | {"model_sha256": hashlib.sha256(data).hexdigest()}
    (tmp_path / "evil.signature.json").write_text(json.dumps(side))
    with pytest.raises(
        ArtifactError, match=r"evil\.skops: refusing to load untrusted .*json.dumps"
    ):
        load_model(tmp_path / "evil.skops")


# ---------------------------------------------------------------- signature


def test_signature_takes_categories_and_bounds_from_the_contract(result):
    """Check contract-derived categories/bounds, observed fallbacks and a JSON round trip."""
    cols = {c["name"]: c for c in result.signature.columns}
    assert [c["name"] for c in result.signature.columns] == list(SPEC.features)
    assert cols["region"]["categories"] == [*REGIONS, "islands"]  # from the contract
    assert cols["age_band"]["categories"] == sorted(AGE_BANDS)  # seen in training
    assert (cols["debt_ratio"]["min"], cols["debt_ratio"]["max"]) == (0, 1.5)
    assert cols["income"]["min"] == 0 and cols["income"]["max"] > 50_000  # max observed
    assert cols["months_at_address"]["type"] == "int" and cols["months_at_address"]["max"] <= 239
    assert cols["income"]["nullable"] and not cols["debt_ratio"]["nullable"]
    text = result.signature.to_json()
    assert Signature.from_dict(json.loads(text)) == result.signature
    assert text == Signature.from_dict(json.loads(text)).to_json()


def test_signature_blocks_missing_column_wrong_type_and_unseen_category(result, loans):
    """Check that every blocking problem is named and score_frame returns nothing."""
    sig = result.signature
    good = loans.tail(50)
    cases = {
        r"column 'income' is missing": good.drop("income"),
        r"column 'debt_ratio' has type string, expected float": good.with_columns(
            pl.col("debt_ratio").cast(pl.String)
        ),
        r"column 'region' has unseen categor(y|ies) \['atlantis'\]": good.with_columns(
            region=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("atlantis")).otherwise("region")
        ),
        r"column 'debt_ratio' has 1 null value\(s\) but is not nullable": good.with_columns(
            debt_ratio=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("debt_ratio")
        ),
    }
    for message, frame in cases.items():
        with pytest.raises(SignatureError, match=message):
            sig.validate(frame)
        scored = None
        with pytest.raises(SignatureError, match=message):
            scored = score_frame(result.pipeline, sig, frame, SPEC)
        assert scored is None
    everything = good.drop("income").with_columns(
        pl.col("debt_ratio").cast(pl.String), region=pl.lit("atlantis")
    )
    problems = sig.check(everything)
    assert any("'income' is missing" in p for p in problems)
    assert any("'debt_ratio' has type string" in p for p in problems)
    assert any("'region' has unseen category ['atlantis']" in p for p in problems)


def test_signature_warns_but_scores_extra_columns_and_out_of_range_values(result, loans):
    """Check that extra columns and out-of-range values are reported as warnings only."""
    frame = loans.tail(20).with_columns(
        debt_ratio=pl.when(pl.int_range(pl.len()) == 0).then(2.5).otherwise("debt_ratio"),
        region=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("islands")).otherwise("region"),
    )
    problems = result.signature.check(frame)
    assert problems and all(p.startswith("warning:") for p in problems)
    assert any(
        "'debt_ratio' has 1 value(s) above the maximum 1.5 (e.g. 2.5)" in p for p in problems
    )
    assert any("extra column(s)" in p and "application_id" in p for p in problems)
    scored = score_frame(result.pipeline, result.signature, frame, SPEC)
    assert scored.columns == [*frame.columns, "score"]
    assert np.array_equal(scored["score"].to_numpy(), predict_scores(result.pipeline, frame, SPEC))
    assert scored["score"].is_between(0, 1).all()
