"""Online features for the service: vectors of a request's entity and of its candidates.

`ServingFeatures` reads the project's online store (SQLite by default, Redis per
params.yaml ``features.online``: `hortus.features.online.open_store`) through the
policy wrapper `hortus.features.online.open_online`, as the service's own identity
(`ServeConfig.user`, ``hortus-serve`` by default): the read grant on every feature
table is checked when it opens, protected features the identity may not unmask are
masked, and every lookup is audited.  The model needs its inputs in the clear, so a
model input that would be served masked is refused at start (the service is not
ready, saying which feature and which grant is missing).  The wrapper's audit
records go to the service's background writer instead of being flushed on the
request path.

One lookup per request (`get_vectors`, batched: one query per group for the entity
and all its candidates); an unknown entity is the store's own `UnknownEntity` (404
naming it), never a vector of defaults.  The ranking candidates are computed once per
materialisation or refresh of the store (the model definition's `scoring.candidates`
hook as of the store's time, else every item of the store's root group of the item
keys), not per request; the watcher recomputes them when the store's
``refreshed_at`` moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl

from hortus.errors import HortusError, UnknownEntity

__all__ = ["ServingFeatures", "UnknownEntity"]


class ServingFeatures:
    """The online store as the service reads it (see the module docstring)."""

    def __init__(self, lh, project, fs, model_def, *, audit_sink=None):
        from hortus.features.online import open_online, open_store
        from hortus.serving._model import request_keys

        self.lh = lh
        self.project = project
        self.fs = fs
        self.model_def = model_def
        self.keys = request_keys(fs)
        self.store = open_store(lh.paths.root, fs)
        if not self.store.exists():
            raise HortusError(
                f"online store {self.store.where} does not exist: run the features stage "
                "(`hortus features online`)"
            )
        self.online = open_online(lh, fs, user=lh.user, store=self.store, purpose="serve")
        if audit_sink is not None:  # records go to the background writer, not the request
            self.online._audit = audit_sink
        self.stamp = self._stamp()
        self.materialized_at: datetime = self.store.materialized_at
        self.candidates: pl.DataFrame | None = None
        self._rows: tuple[tuple, list[dict]] | None = None  # (candidates id, keys), rows
        if model_def is not None and model_def.task == "ranking":
            self.candidates = self._candidates()

    @property
    def where(self) -> str:
        return f"{self.store.backend} {self.store.where}"

    def masked_inputs(self, names: Sequence[str]) -> list[str]:
        """Return the model inputs this identity would read masked."""
        return [n for n in names if n in set(self.online.masked)]

    def _stamp(self) -> tuple[str, str]:
        meta = self.store.meta()
        return meta.get("materialized_at", ""), meta.get("refreshed_at", "")

    def changed(self) -> bool:
        """Return whether the store was re-materialised or refreshed since the last look."""
        try:
            return self._stamp() != self.stamp
        except Exception:
            return False

    def refresh(self) -> None:
        """Take a new materialisation or refresh into account (candidates, as-of time)."""
        self.stamp = self._stamp()
        self.materialized_at = self.store.materialized_at
        if self.candidates is not None:
            self.candidates = self._candidates()
            self._rows = None

    # ---------------------------------------------------------------- candidates
    def candidate_rows(self, items: list[str]) -> list[dict]:
        """Return the candidates' item keys as dicts (cached per candidate frame)."""
        cands = self.candidates
        cached = self._rows
        if cached is not None and cached[0] == (id(cands), *items):
            return cached[1]
        rows = cands.select(items).to_dicts()
        self._rows = ((id(cands), *items), rows)
        return rows

    def item_keys(self, given: Sequence[str]) -> list[str]:
        """Return the request keys a request naming `given` leaves to the candidates."""
        return [k for k in self.keys if k not in given]

    def _candidates(self) -> pl.DataFrame:
        m = self.model_def
        hook = self.project.hook(m.scoring.candidates, f"models.{m.name}.scoring.candidates")
        at = self.store.refreshed_at
        if hook is not None:
            return hook(self.lh, at)
        for g in self.fs.groups:  # every item: a group keyed by one request key, not the first
            ent = list(self.fs.key_columns(g))
            if ent == list(g.entity) and len(ent) == 1 and ent[0] != self.keys[0]:
                rows = self.store.entity_keys(g.name, 1_000_000)
                return pl.DataFrame(rows).unique().sort(ent)
        raise HortusError("the online store has no group of candidate items to rank")

    def drop_candidate(self, entity: dict) -> bool:
        """Leave out a candidate the store does not know (e.g. added after it was built)."""
        if self.candidates is None or not set(entity) <= set(self.candidates.columns):
            return False
        keep = ~pl.all_horizontal(pl.col(k) == v for k, v in entity.items())
        before = self.candidates.height
        self.candidates = self.candidates.filter(keep)
        self._rows = None
        return self.candidates.height < before

    # ------------------------------------------------------------------- lookups
    def vectors(self, entities: Sequence[dict]) -> list[dict[str, Any]]:
        """Return the feature vectors of `entities` (one batched, audited lookup)."""
        return self.online.get_vectors(list(entities), purpose="serve")

    def close(self) -> None:
        self.store.close()
