"""The closed loop: simulated buyers see the plants Hortus recommended to them.

Without it the simulator's recommendation slots hold a model-free list (quality,
taste and noise), so nothing a model does changes what buyers click.  With it,
`hortus simulate --more-days N` reads the recommendations that were served or
logged (`served_recommendations`: ops.prediction_log rows with a rank, batch and
online, and gold.recommendations) and, on every new day, a buyer with a served
list sees it in the recommendation slots of each session, best first:

- a list scored as of time t is shown from the first day starting at or after t
  (a list scored as of midnight is that day's list), until a newer list for the
  same buyer replaces it;
- the served plants take the first positions (up to the slots of the session), the
  model-free list fills the slots after them, without repeating a plant;
- clicks, views, carts and orders then follow the buyer's latent utility of the
  plant shown and its position, exactly as for the model-free list, so a list that
  ranks what the buyer likes first earns more clicks and orders;
- no random number is drawn for the loop: the same seed and the same served lists
  give the same files, and without served lists (or with `--open-loop`) the export
  is byte-identical to an open-loop one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

__all__ = ["Served", "served_recommendations"]

_US_PER_DAY = 86_400_000_000
_LOG = "ops.prediction_log"
_RECS = "gold.recommendations"


@dataclass(frozen=True)
class Served:
    """Recommendation lists by buyer: `start` (first simulated day index shown), `user`
    (simulator user index), `plants` (n_lists x k plant indices, best first, -1 padded).

    Examples
    --------
    >>> f = pl.DataFrame({"user_id": ["u000001", "u000001"], "plant_id": ["p0003", "p0001"],
    ...                   "rank": [1, 2], "as_of": [datetime(2025, 1, 2)] * 2})
    >>> s = Served.from_frame(f, date(2025, 1, 1))
    >>> s.table(1, n_users=2).tolist()
    [[2, 0], [-1, -1]]
    """

    start: np.ndarray
    user: np.ndarray
    plants: np.ndarray

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, start: date) -> Served:
        """Build lists from rows (user_id, plant_id, rank, as_of); day 0 is `start`."""
        if frame.height == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 1), np.int64))
        day0 = datetime(start.year, start.month, start.day)
        f = (
            frame.select(
                pl.col("user_id").str.slice(1).cast(pl.Int64) - 1,
                pl.col("plant_id").str.slice(1).cast(pl.Int64) - 1,
                pl.col("rank").cast(pl.Int64),
                # shown from the day of as_of (a list scored at midnight is that day's list)
                (
                    (
                        pl.col("as_of").dt.replace_time_zone(None) - pl.lit(day0)
                    ).dt.total_microseconds()
                    + _US_PER_DAY
                    - 1
                )
                // _US_PER_DAY,
            )  # fmt: skip
            .rename({"as_of": "start"})
            .unique(["user_id", "start", "rank"], keep="first")
            .sort("user_id", "start", "rank")
        )
        lists = f.group_by("user_id", "start", maintain_order=True).agg("plant_id")
        k = int(lists["plant_id"].list.len().max())
        plants = np.full((lists.height, k), -1, np.int64)
        for i, items in enumerate(lists["plant_id"].to_list()):
            plants[i, : len(items)] = items
        return cls(lists["start"].to_numpy(), lists["user_id"].to_numpy(), plants)

    @classmethod
    def of(cls, frame: pl.DataFrame | None, start: date) -> Served | None:
        """Return the lists of `frame` (see `from_frame`), or None without any rows."""
        return None if frame is None or frame.height == 0 else cls.from_frame(frame, start)

    @staticmethod
    def note(served: Served | None) -> dict:
        """Return the manifest's record of a continuation's closed loop ({} without one)."""
        if served is None:
            return {}
        return {"closed_loop": {"lists": len(served), "buyers": int(np.unique(served.user).size)}}

    def __len__(self) -> int:
        return len(self.user)

    def table(self, d: int, n_users: int) -> np.ndarray:
        """Return (n_users x k) plant indices each buyer sees on day d (-1: no served list)."""
        out = np.full((n_users, self.plants.shape[1]), -1, np.int64)
        live = np.flatnonzero((self.start <= d) & (self.user < n_users) & (self.user >= 0))
        if len(live):
            # the newest list per buyer wins
            order = live[np.lexsort((self.start[live], self.user[live]))]
            last = np.ones(len(order), bool)
            last[:-1] = self.user[order][1:] != self.user[order][:-1]
            out[self.user[order[last]]] = self.plants[order[last]]
        return out


def apply_served(
    rec_plants: np.ndarray, su: np.ndarray, table: np.ndarray | None, n_plants: int
) -> np.ndarray:
    """Return the slots of sessions `su`: served plants first, then the model-free list."""
    if table is None:  # open loop
        return rec_plants
    served = table[su]
    rows = np.flatnonzero((served >= 0).any(axis=1))
    if not len(rows):
        return rec_plants
    out = rec_plants.copy()
    k_max = rec_plants.shape[1]
    for r in rows:
        mine = [p for p in served[r] if 0 <= p < n_plants][:k_max]
        mine = list(dict.fromkeys(mine))
        fill = [p for p in rec_plants[r] if p not in set(mine)]
        out[r] = (mine + fill)[:k_max]
    return out


def served_recommendations(lh) -> pl.DataFrame | None:
    """Return the recommendations served or logged in a lakehouse, or None without any.

    Rows (user_id, plant_id, rank, as_of) of ops.prediction_log with a rank and a
    request naming user_id and plant_id (batch scoring and `hortus serve`'s
    /recommend), and of gold.recommendations (its latest version); one list per
    buyer and as_of.  A table this user may not read is left out (asked of the
    policy, so no denied attempt is recorded); None when nothing is left.
    """

    def readable(name: str) -> bool:
        return lh.exists(name) and lh.policy.decide(lh.user, "read", name).allowed

    frames = []
    if readable(_LOG):
        log = (
            lh.scan(_LOG)
            .filter(pl.col("rank").is_not_null())
            .select(
                pl.col("request").str.json_path_match("$.user_id").alias("user_id"),
                pl.col("request").str.json_path_match("$.plant_id").alias("plant_id"),
                pl.col("rank").cast(pl.Int64),
                pl.col("as_of").cast(pl.Datetime("us", "UTC")),
            )
        )
        frames.append(log.drop_nulls(["user_id", "plant_id"]).collect())
    if readable(_RECS):
        recs = lh.scan(_RECS).select(
            "user_id", "plant_id", pl.col("rank").cast(pl.Int64),
            pl.col("as_of").cast(pl.Datetime("us", "UTC")),
        )  # fmt: skip
        frames.append(recs.collect())
    if not frames:
        return None
    out = pl.concat(frames).filter(
        pl.col("user_id").str.contains(r"^u\d{6}$") & pl.col("plant_id").str.contains(r"^p\d{4}$")
    )
    return out if out.height else None
