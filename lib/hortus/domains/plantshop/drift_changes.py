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
    # 25-40% dearer plants in one or two categories: the catalogue and the order lines
    "price_change": ("silver.plants.price", "silver.events.price"),
    # 40% more traffic (every events count), flowering plants favoured, more mobile
    "seasonal": ("silver.events.*", "silver.events.plant_id", "silver.events.device"),
}


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
