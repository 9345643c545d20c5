"""Online features for the service: vectors of a request's entity and candidates.

`ServingFeatures` wraps one materialisation of the online store (hortus.features.store):
its vectors, whether an entity is known (an unknown entity is a 404 naming it, never a
vector of defaults), and the ranking candidates, computed once per materialisation
(the model definition's `scoring.candidates` hook as of the store's time, else every
item of the store).  When the store file is replaced (a new materialisation), the
watcher builds a new `ServingFeatures` and the service swaps it in like a model.

The SQLite connection is opened lazily by the thread that serves requests (the event
loop); the watcher thread only reads the metadata through a throw-away instance.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hortus.errors import HortusError


class UnknownEntity(HortusError, KeyError):
    """A request names an entity the online store does not hold (HTTP 404)."""

    def __init__(self, entity: dict):
        self.entity = dict(entity)
        super().__init__(f"unknown entity {self.entity}: not in the online store")

    def __str__(self) -> str:
        return str(self.args[0])


def _store_error():
    """Return the store's own UnknownEntity class once helper E's batched lookup exists."""
    try:
        from hortus.errors import UnknownEntity as StoreUnknown  # type: ignore[attr-defined]
    except ImportError:
        return None
    return StoreUnknown


class ServingFeatures:
    """One online-store materialisation, as the service reads it."""

    def __init__(self, path: Path, fs, keys: list[str], *, candidates: pl.DataFrame | None):
        from hortus.features.store import OnlineStore

        self.path = Path(path)
        self.fs = fs
        self.keys = keys
        self.store = OnlineStore(self.path, fs)
        self.candidates = candidates
        stat = self.path.stat()
        self.stamp = (stat.st_mtime_ns, stat.st_ino)
        probe = OnlineStore(self.path, fs)
        try:
            self.materialized_at = probe.materialized_at
        finally:
            probe.close()
        self._batched = hasattr(self.store, "get_vectors")
        self._unknown = _store_error()

    @classmethod
    def open(cls, lh, project, fs, model_def) -> ServingFeatures:
        """Open the store of `lh`'s project and compute the candidates of a ranking model."""
        from hortus.serving._model import request_keys

        path = lh.paths.online_store
        if not path.exists():
            raise HortusError(f"online store {path} does not exist: run `hortus features online`")
        keys = request_keys(fs)
        feats = cls(path, fs, keys, candidates=None)
        if model_def is not None and model_def.task == "ranking":
            feats.candidates = feats._candidates(lh, project, model_def)
        return feats

    def changed(self) -> bool:
        """Return whether the store file was replaced since this instance was opened."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return (stat.st_mtime_ns, stat.st_ino) != self.stamp

    # ---------------------------------------------------------------- candidates
    def item_keys(self, given: Sequence[str]) -> list[str]:
        """Return the request keys a request naming `given` leaves to the candidates."""
        return [k for k in self.keys if k not in given]

    def _candidates(self, lh, project, model_def) -> pl.DataFrame:
        hook = project.hook(model_def.scoring.candidates,
                            f"models.{model_def.name}.scoring.candidates")  # fmt: skip
        if hook is not None:
            return hook(lh, self.materialized_at)
        # every item of the store: the group keyed by keys that are not the user's
        import sqlite3

        con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            for g in self.fs.groups:
                ent = list(self.fs.key_columns(g))
                if ent == list(g.entity) and len(ent) == 1 and ent[0] != self.keys[0]:
                    cols = ", ".join(f'"{e}"' for e in ent)
                    rows = con.execute(f'SELECT DISTINCT {cols} FROM "{g.name}"').fetchall()
                    return pl.DataFrame(rows, schema=ent, orient="row").sort(ent)
        finally:
            con.close()
        raise HortusError("the online store has no group of candidate items to rank")

    # ------------------------------------------------------------------- lookups
    def known(self, entity: dict) -> bool:
        """Return whether some group keyed by exactly these keys holds the entity."""
        con = self.store._connect()
        names = list(entity)
        checked = False
        for g in self.fs.groups:
            ent = list(self.fs.key_columns(g))
            if sorted(ent) != sorted(names) or ent != list(g.entity):
                continue
            checked = True
            where = " AND ".join(f'"{e}" = ?' for e in ent)
            row = con.execute(f'SELECT 1 FROM "{g.name}" WHERE {where} LIMIT 1',
                              [entity[e] for e in ent]).fetchone()  # fmt: skip
            if row is not None:
                return True
        return not checked

    def vectors(self, entities: Sequence[dict], root: dict) -> list[dict[str, Any]]:
        """Return the feature vectors of `entities`; UnknownEntity when `root` is unknown."""
        if self._batched:
            try:
                return self.store.get_vectors(entities)
            except Exception as exc:
                if self._unknown is not None and isinstance(exc, self._unknown):
                    raise UnknownEntity(getattr(exc, "entity", root)) from None
                raise
        if not self.known(root):
            raise UnknownEntity(root)
        return [self.store.get_vector(e) for e in entities]

    def close(self) -> None:
        self.store.close()
