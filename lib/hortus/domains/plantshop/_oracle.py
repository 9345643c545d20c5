"""The best and the reversed ranking of the plant shop's simulated buyers (a yardstick).

The simulator knows each buyer's latent utility of every plant; `oracle_lists` ranks
by it, so the closed loop (`_closed_loop`) can be checked: served lists ranked well
earn more clicks and orders than lists ranked in reverse.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from hortus.domains.plantshop import simulate as sim

_US_PER_DAY = 86_400_000_000


def oracle_lists(cfg, k: int, *, at: datetime, worst: bool = False) -> pl.DataFrame:
    """Return each initial buyer's k plants ranked by their true (latent) utility.

    A yardstick for the closed loop (tests, docs): the best possible ranking, or with
    `worst` the reversed one (the k plants each buyer likes least, the least first).
    Rows (user_id, plant_id, rank, as_of=at) like `served_recommendations`; base
    prices, no season, in-stock plants only.
    """
    cat = sim._catalogue(cfg)
    rng0 = sim._rng(cfg.seed, sim._S_USERS0)  # the initial population, as `_generate` draws it
    users, csv0 = sim._new_users(rng0, cfg.users, sim._BASE_COUNTRY_P, -1, cfg.start_date)
    lo_us = sim._day_us(sim.SHOP_OPENED)
    hi_us = max(sim._day_us(cfg.start_date), lo_us + _US_PER_DAY)
    users, _, _ = sim._in_signup_order(users, csv0, rng0.integers(lo_us, hi_us, cfg.users))
    util = sim._utilities(users, np.arange(cfg.users), cat, np.log(cat.price), 0.0)
    util = np.where(cat.in_stock[None, :], util, -np.inf if not worst else np.inf)
    top = sim._top_k(-util if worst else util, k)
    n = cfg.users
    return pl.DataFrame(
        {
            "user_id": [f"u{i + 1:06d}" for i in np.repeat(np.arange(n), k)],
            "plant_id": [f"p{p + 1:04d}" for p in top.ravel()],
            "rank": np.tile(np.arange(1, k + 1), n),
            "as_of": [at] * (n * k),
        }
    )
