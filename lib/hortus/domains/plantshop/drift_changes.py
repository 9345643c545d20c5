"""What each drift scenario of the plant-shop simulator changes, by source column.

A drifted export's manifest records it (``drift.changed_columns``), so the features
expected to drift follow from feature lineage
(`hortus.features.definitions.features_reading`) rather than from a hand-kept list.
Names are ``silver.<table>.<column>``; ``silver.<table>.*`` means the table's rows
(their number per day), which every count over that table reads.
"""

from __future__ import annotations

from collections.abc import Iterable

DRIFT_CHANGES: dict[str, tuple[str, ...]] = {
    # sign-ups from three Nordic countries (a new region); their other attributes are
    # drawn as before
    "new_region": ("silver.users.country", "silver.users.region"),
    # 25-40% dearer plants in one or two categories: the catalogue and the order lines;
    # the price-sensitive buyers order fewer of them, so the number of order events and
    # their mix of plants change too (measured against the clean shop of the same seed:
    # a plant's 30-day conversion moved 0.22 sd on seed 7, its 7-day order lines 0.20),
    # and fewer orders bring fewer reviews (written a few days after the order, as in
    # seasonal; a small change: a plant's review count moved 0.01-0.03 sd against the
    # clean shop, on 28 days and on 56)
    "price_change": (
        "silver.plants.price",
        "silver.events.price",
        "silver.events.*",
        "silver.events.plant_id",
        "silver.reviews.*",
    ),
    # spring: 40% more traffic and keener visitors (more clicks, carts and orders per
    # visit: every events count and ratio), flowering plants favoured, more mobile; the
    # extra orders bring more reviews (written a few days after the order)
    "seasonal": (
        "silver.events.*",
        "silver.events.plant_id",
        "silver.events.device",
        "silver.reviews.*",
    ),
}

#: what the seasonal scenario changes in the buyers' behaviour from its first day (the
#: drifted export's manifest records it under ``drift.seasonal``): sessions per user
#: (times ``traffic``), the share of mobile sessions (plus ``mobile``), the utility of
#: flowering plants (plus ``flowering``; recommendations favour them by half of it), the
#: logit of a click on a recommendation and of an add to cart (plus ``click_logit``,
#: ``cart_logit``) and the share of sessions that order their cart (``convert``, 0.60
#: otherwise).  Spring visitors engage more, not only more often: a change of volume
#: alone leaves the ratios (click-through, conversion) where they were.
SEASONAL: dict[str, float] = {
    "traffic": 1.4, "mobile": 0.10, "flowering": 0.8, "click_logit": 0.7, "cart_logit": 0.4,
    "convert": 0.75,
}  # fmt: skip


def changed_columns(drifts: Iterable[str]) -> dict:
    """Return the manifest entry for `drifts`: nothing at all for a clean export.

    Examples
    --------
    >>> changed_columns([])
    {}
    >>> changed_columns(["new_region"])["changed_columns"]["new_region"]
    ['silver.users.country', 'silver.users.region']
    """
    kinds = sorted(set(drifts))
    if not kinds:  # a clean export's manifest stays as it was (data.dvc pins its bytes)
        return {}
    return {"changed_columns": {k: list(DRIFT_CHANGES[k]) for k in kinds}}
