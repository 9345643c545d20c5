"""The plant shop's features: groups for users, plants and user-plant affinity."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from hortus.features.definitions import Agg, Band, FeatureGroup, FeatureSet, Ratio


def _is(kind: str) -> pl.Expr:
    return (pl.col("event_type") == kind).cast(pl.Float64)


def _spend() -> pl.Expr:
    return (
        pl.when(pl.col("event_type") == "order")
        .then(pl.col("quantity") * pl.col("price"))
        .otherwise(0.0)
    )


def _with_category(events: pl.LazyFrame, read: Callable[[str], pl.LazyFrame]) -> pl.LazyFrame:
    """Attach each plant's category (categories do not change over a plant's life)."""
    cats = read("silver.plants").select("plant_id", "category").unique("plant_id", keep="first")
    return events.filter(pl.col("plant_id").is_not_null()).join(cats, on="plant_id", how="inner")


def _signups(users: pl.LazyFrame, read: Callable[[str], pl.LazyFrame]) -> pl.LazyFrame:
    return users.with_columns(pl.lit(1.0).alias("_one"))


USER_ACTIVITY = FeatureGroup(
    name="user_activity",
    entity=("user_id",),
    source="silver.events",
    timestamp="ts",
    description="What a user did in the shop before t.",
    aggs=(
        Agg("sessions", _is("session_start"), ("7d", "30d"), recency=True),
        Agg("views", _is("view"), ("7d", "30d")),
        Agg("impressions", _is("rec_impression"), ("30d",)),
        Agg("clicks", _is("rec_click"), ("30d",), recency=True),
        Agg("carts", _is("add_to_cart"), ("7d", "30d")),
        Agg("order_lines", _is("order"), ("30d", "all"), recency=True),
        Agg("spend", _spend(), ("30d", "all")),
    ),
)
USER_PROFILE = FeatureGroup(
    name="user_profile",
    entity=("user_id",),
    source="silver.users",
    timestamp="signup_at",
    description="Who the user is (tokenised and generalised attributes only).",
    latest=("region", "country", "device", "age_band"),
    aggs=(Agg("signup", pl.col("_one"), (), recency=True),),
    prepare=_signups,
)
PLANT_CATALOG = FeatureGroup(
    name="plant_catalog",
    entity=("plant_id",),
    source="silver.plants",
    timestamp="updated_at",
    description="The plant's catalogue entry as of t (price history included).",
    latest=("category", "price", "light", "care_level", "pet_safe", "stock"),
)
PLANT_POPULARITY = FeatureGroup(
    name="plant_popularity",
    entity=("plant_id",),
    source="silver.events",
    timestamp="ts",
    description="How much attention and how many sales the plant got before t.",
    aggs=(
        Agg("views", _is("view"), ("7d", "30d")),
        Agg("impressions", _is("rec_impression"), ("30d",)),
        Agg("clicks", _is("rec_click"), ("30d",)),
        Agg("carts", _is("add_to_cart"), ("7d",)),
        Agg("order_lines", _is("order"), ("7d", "30d")),
    ),
)
PLANT_REVIEWS = FeatureGroup(
    name="plant_reviews",
    entity=("plant_id",),
    source="silver.reviews",
    timestamp="ts",
    description="Reviews of the plant before t.",
    aggs=(
        Agg("reviews", pl.lit(1.0), ("all",)),
        Agg("rating_sum", pl.col("rating").cast(pl.Float64), ("all",)),
    ),
)
USER_CATEGORY = FeatureGroup(
    name="user_category",
    entity=("user_id", "category"),
    source="silver.events",
    timestamp="ts",
    description="The user's interest in the plant's category before t.",
    aggs=(
        Agg("views", _is("view"), ("30d",)),
        Agg("carts", _is("add_to_cart"), ("30d",)),
        Agg("order_lines", _is("order"), ("all",)),
    ),
    prepare=_with_category,
)
USER_PLANT = FeatureGroup(
    name="user_plant",
    entity=("user_id", "plant_id"),
    source="silver.events",
    timestamp="ts",
    description="The user's history with this very plant before t.",
    aggs=(
        Agg("views", _is("view"), ("30d",)),
        Agg("clicks", _is("rec_click"), ("30d",)),
        Agg("carts", _is("add_to_cart"), ("30d",)),
        Agg("order_lines", _is("order"), ("all",)),
    ),
)

FEATURES = FeatureSet(
    groups=(
        USER_ACTIVITY,
        USER_PROFILE,
        PLANT_CATALOG,
        PLANT_POPULARITY,
        PLANT_REVIEWS,
        USER_CATEGORY,
        USER_PLANT,
    ),
    derived=(
        Ratio("user_ctr_30d", "user_activity__clicks_30d", "user_activity__impressions_30d"),
        Ratio("user_avg_line_value", "user_activity__spend_all", "user_activity__order_lines_all"),
        Ratio("plant_ctr_30d", "plant_popularity__clicks_30d", "plant_popularity__impressions_30d"),
        Ratio(
            "plant_conversion_30d",
            "plant_popularity__order_lines_30d",
            "plant_popularity__views_30d",
        ),
        Ratio("plant_avg_rating", "plant_reviews__rating_sum_all", "plant_reviews__reviews_all"),
        Ratio("category_affinity_30d", "user_category__views_30d", "user_activity__views_30d"),
        Ratio("price_vs_user_avg", "plant_catalog__price", "user_avg_line_value"),
        Band("price_band", "plant_catalog__price", (10.0, 20.0, 40.0, 80.0)),
    ),
    # user_category is keyed by the plant's category as of t, found by plant_catalog first
    keys={"user_category": ("user_id", "plant_catalog__category")},
)

CATEGORICAL = [
    "user_profile__region",
    "user_profile__country",
    "user_profile__device",
    "user_profile__age_band",
    "plant_catalog__category",
    "plant_catalog__light",
    "plant_catalog__care_level",
]


def request_sample(lh, n: int, seed: int) -> pl.DataFrame:
    """Return a seeded sample of distinct (user_id, plant_id) request keys seen in events."""
    from hortus.features.store import sample_entities

    return sample_entities(lh, "silver.events", ("user_id", "plant_id"), n, seed)
